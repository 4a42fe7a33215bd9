"""Names as Kubernetes scopes them, and how labkit keys and addresses them.

A pod, Service or policy name is unique within its namespace. labkit's model
keys objects of `default` by their bare name and others as `NS/NAME`;
`resolve` turns what a user typed into a key, `slug` a key into a name safe
for files, network namespaces and chain names.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from labkit.errors import UsageError
from labkit.topology.model import key_name, object_key

# Kubernetes' own name rules (apimachinery's validation).
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # RFC 1123 label, <= 63
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # RFC 1035 label, <= 63
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SLUG_MAX = 32  # what native names are held to, so a slug fits where they fit


def name_problem(kind: str, name: str) -> str | None:
    """Why `name` is not a valid name for `kind`, as the API server would say, or None."""
    if kind in ("Service", "Namespace"):
        pattern, limit = (DNS_1035_LABEL if kind == "Service" else DNS_LABEL), 63
        rule = "an RFC 1035 label" if kind == "Service" else "an RFC 1123 label"
    else:
        pattern, limit, rule = DNS_SUBDOMAIN, 253, "an RFC 1123 subdomain"
    if not name:
        return "metadata.name is required"
    if len(name) > limit or not pattern.match(name):
        return f"name {name!r} must be {rule} (lower case letters, digits, '-'; at most {limit})"
    return None


def resolve(name: str, keys: Iterable[str], what: str = "object") -> str:
    """The key a user means by `name`: `NS/NAME`, or a bare name in default or unambiguous."""
    keys = list(keys)
    if "/" in name:
        namespace, _, bare = name.partition("/")
        key = object_key(namespace, bare)
        if key in keys:
            return key
        raise UsageError(f"no {what} {name!r}" + _known(keys))
    if name in keys:
        return name
    candidates = sorted(key for key in keys if key_name(key) == name)
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise UsageError(f"{what} name {name!r} is ambiguous: say {' or '.join(candidates)}")
    raise UsageError(f"no {what} {name!r}" + _known(keys))


def _known(keys: list[str]) -> str:
    shown = sorted(keys)[:20]
    return f" (known: {', '.join(shown)}{', ...' if len(keys) > 20 else ''})" if keys else ""


def slug(key: str) -> str:
    """A unique name for files and network namespaces: `shop/web` -> `shop_web`.

    Kubernetes names have no `_`, so the mapping is one to one; a long result
    is cut and made unique again with a hash of the whole key.
    """
    flat = key.replace("/", "_")
    if len(flat) <= SLUG_MAX:
        return flat
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"{flat[: SLUG_MAX - 9].rstrip('-_.')}-{digest}"
