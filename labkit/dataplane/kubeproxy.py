"""What the service proxy programs, independent of the mode (iptables or nftables).

A `ProxyPlan` is the same on every cluster node (no node-local traffic
policy), so one payload serves all nodes. Names and hashes follow kube-proxy,
so that its rules read the same here.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network


@dataclass(frozen=True)
class EndpointPlan:
    """One backend of a service port: the pod's IP and the target port."""

    ip: IPv4Address
    port: int
    pod: str = ""

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class ServicePortPlan:
    """One port of one service, with its endpoints (ordered as kube-proxy orders them)."""

    namespace: str
    service: str
    port_name: str  # "" for an unnamed port
    protocol: str  # "TCP" | "UDP"
    vip: IPv4Address
    port: int
    node_port: int | None = None
    affinity_seconds: int | None = None  # ClientIP affinity timeout, None without
    endpoints: tuple[EndpointPlan, ...] = ()

    @property
    def name(self) -> str:
        """kube-proxy's ServicePortName: `namespace/service[:port]`."""
        base = f"{self.namespace}/{self.service}"
        return f"{base}:{self.port_name}" if self.port_name else base

    @property
    def proto(self) -> str:
        return self.protocol.lower()


@dataclass(frozen=True)
class ProxyPlan:
    cluster_cidr: IPv4Network  # the pod CIDR: traffic from outside it is masqueraded
    services: tuple[ServicePortPlan, ...] = ()

    def by_name(self) -> dict[tuple[str, str], ServicePortPlan]:
        return {(s.name, s.proto): s for s in self.services}


def sort_endpoints(endpoints: Iterable[EndpointPlan]) -> tuple[EndpointPlan, ...]:
    """kube-proxy orders endpoints by their `ip:port` string."""
    return tuple(sorted(endpoints, key=lambda e: e.address))


def proto_hash(*parts: str) -> str:
    """kube-proxy's chain-name hash: base32(sha256(concatenation))[:16]."""
    digest = hashlib.sha256("".join(parts).encode()).digest()
    return base64.b32encode(digest).decode()[:16]


def changed_services(old: ProxyPlan, new: ProxyPlan) -> set[tuple[str, str]]:
    """Keys of the service ports added, removed or different between two plans."""
    before, after = old.by_name(), new.by_name()
    return {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
