"""Pod names as Kubernetes forms them, made deterministic.

A Deployment's pods are `<deployment>-<pod-template-hash>-<suffix>`: the hash
is computed as the Deployment controller does (FNV-1a of the template, its
decimal digits mapped onto the safe alphabet), the suffix - random in
Kubernetes - is derived from the owner and the replica's index, so the same
files give the same names on every run.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# k8s.io/apimachinery/pkg/util/rand: no vowels, no look-alike characters.
ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
SUFFIX_LENGTH = 5
MAX_GENERATED_BASE = 63 - SUFFIX_LENGTH  # as the API server cuts a generateName


def safe_encode(text: str) -> str:
    return "".join(ALPHABET[ord(char) % len(ALPHABET)] for char in text)


def fnv1a_32(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def template_hash(template: dict[str, Any]) -> str:
    """The pod-template-hash label of a Deployment's ReplicaSet (stable for equal templates)."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return safe_encode(str(fnv1a_32(canonical.encode())))


def suffix(owner: str, index: int, attempt: int = 0) -> str:
    digest = hashlib.sha256(f"{owner}#{index}#{attempt}".encode()).digest()
    return "".join(ALPHABET[byte % len(ALPHABET)] for byte in digest[:SUFFIX_LENGTH])


def generated_name(base: str, owner: str, index: int, taken: set[str]) -> str:
    """`base` + a suffix, as `metadata.generateName` gives, avoiding names in `taken`."""
    base = base[:MAX_GENERATED_BASE]
    attempt = 0
    while (name := base + suffix(owner, index, attempt)) in taken:
        attempt += 1
    taken.add(name)
    return name
