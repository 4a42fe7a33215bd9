"""Object keys as a user types them: `NS/NAME`, or a bare name. Pure."""

from __future__ import annotations

from collections.abc import Iterable

from labkit.errors import UsageError
from labkit.topology.model import key_name, object_key


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
