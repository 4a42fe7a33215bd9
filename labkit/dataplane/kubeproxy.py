"""What the service proxy programs, independent of the mode (iptables or nftables).

A `ProxyPlan` is the same on every cluster node (no node-local traffic
policy), so one payload serves all nodes. Names and hashes follow kube-proxy,
so that its rules read the same here.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from labkit.topology.model import Topology, key_name
from labkit.topology.services_alloc import ServiceEndpoint, node_port_key, port_key

# The packet mark that asks for masquerading on the way out (kube-proxy's, both modes).
MASQ_MARK = "0x4000"


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


def owned_chains(
    service: ServicePortPlan,
    own: Callable[[ServicePortPlan], str],
    external: Callable[[ServicePortPlan], str],
    endpoint: Callable[[ServicePortPlan, EndpointPlan], str],
) -> list[str]:
    """The chains a service port owns, named by the mode: its own, the external one
    with a node port, one per endpoint; none without endpoints (it is rejected instead)."""
    if not service.endpoints:
        return []
    chains = [own(service)]
    if service.node_port is not None:
        chains.append(external(service))
    return chains + [endpoint(service, e) for e in service.endpoints]


# -- from the topology ------------------------------------------------------------


def build_plan(
    topology: Topology,
    vips: Mapping[str, IPv4Address],
    node_ports: Mapping[str, int],
    endpoints: Mapping[str, Sequence[ServiceEndpoint]],
) -> ProxyPlan:
    """What every node programs: one entry per service port, endpoints resolved."""
    services = []
    for name, service in topology.services.items():
        affinity = service.affinity_timeout if service.session_affinity == "ClientIP" else None
        for port in service.ports:
            key = port_key(port)
            backends = [
                EndpointPlan(endpoint.ip, endpoint.ports[key], endpoint.pod)
                for endpoint in endpoints.get(name, ())
                if key in endpoint.ports
            ]
            services.append(
                ServicePortPlan(
                    namespace=service.namespace,
                    service=key_name(name),
                    port_name=port.name or "",
                    protocol=port.protocol,
                    vip=vips[name],
                    port=port.port,
                    node_port=node_ports.get(node_port_key(name, port)),
                    affinity_seconds=affinity,
                    endpoints=sort_endpoints(backends),
                )
            )
    return ProxyPlan(topology.cluster.pod_cidr, tuple(services))


# -- conntrack: what a change leaves behind ------------------------------------------


def conntrack_flushes(old: ProxyPlan, new: ProxyPlan) -> list[str]:
    """conntrack deletions kube-proxy makes after a change (UDP has no connection to end).

    A removed endpoint's flows are deleted, or a client keeps sending to it;
    a service that gets its first endpoint loses its flows (they hit REJECT).
    """
    commands: list[str] = []
    before = old.by_name()
    for key, service in new.by_name().items():
        if service.proto != "udp":
            continue
        previous = before.get(key)
        if previous is None:
            continue
        if not previous.endpoints and service.endpoints:
            commands.append(f"conntrack -D -p udp --orig-dst {service.vip}")
        kept = {e.ip for e in service.endpoints}
        for gone in sorted({e.ip for e in previous.endpoints} - kept):
            commands.append(f"conntrack -D -p udp --orig-dst {previous.vip} --dst-nat {gone}")
            if previous.node_port is not None:
                commands.append(
                    f"conntrack -D -p udp --orig-port-dst {previous.node_port} --dst-nat {gone}"
                )
    for key, previous in before.items():
        if previous.proto == "udp" and key not in new.by_name():
            commands.append(f"conntrack -D -p udp --orig-dst {previous.vip}")
    # Nothing to delete is not a failure.
    return [f"{command} >/dev/null 2>&1 || true" for command in commands]


# -- state ----------------------------------------------------------------------------


def plan_to_json(plan: ProxyPlan) -> dict[str, Any]:
    return {
        "cluster_cidr": str(plan.cluster_cidr),
        "services": [
            {
                **{k: v for k, v in asdict(s).items() if k not in ("vip", "endpoints")},
                "vip": str(s.vip),
                "endpoints": [[str(e.ip), e.port, e.pod] for e in s.endpoints],
            }
            for s in plan.services
        ],
    }


def plan_from_json(document: Mapping[str, Any]) -> ProxyPlan:
    services = []
    for raw in document["services"]:
        fields = dict(raw)
        endpoints = tuple(
            EndpointPlan(IPv4Address(ip), port, pod) for ip, port, pod in fields.pop("endpoints")
        )
        services.append(
            ServicePortPlan(**{**fields, "vip": IPv4Address(fields["vip"]), "endpoints": endpoints})
        )
    return ProxyPlan(IPv4Network(document["cluster_cidr"]), tuple(services))
