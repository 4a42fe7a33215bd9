"""Names as Kubernetes scopes them, and how labkit keys and addresses them.

A pod, Service or policy name is unique within its namespace. labkit's model
keys objects of `default` by their bare name and others as `NS/NAME`;
`resolve` turns what a user typed into a key, `slug` a key into a name safe
for files, network namespaces and chain names.
"""

from __future__ import annotations

import re

from labkit.topology.keys import resolve
from labkit.topology.model import SLUG_MAX, key_name, object_key, slug

__all__ = ["SLUG_MAX", "key_name", "name_problem", "object_key", "resolve", "slug"]

# Kubernetes' own name rules (apimachinery's validation).
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # RFC 1123 label, <= 63
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # RFC 1035 label, <= 63
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


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
