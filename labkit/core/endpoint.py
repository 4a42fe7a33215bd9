"""The endpoint protocol: what a probe needs of its source (a node or a pod)."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Protocol, runtime_checkable

from labkit.runtime.base import ExecResult


@runtime_checkable
class Endpoint(Protocol):
    """Something that can send probes and be their target."""

    name: str

    @property
    def ip(self) -> IPv4Address: ...

    def exec(
        self, command: str, *, check: bool = True, timeout: float | None = None
    ) -> ExecResult: ...


Target = Endpoint | IPv4Address | str
