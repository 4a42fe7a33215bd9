"""What the service proxy programs, independent of the mode (iptables or nftables).

A `ProxyPlan` is one node's view: the service ports (the same everywhere)
and the node it is for, which decides which endpoints are local (Local
traffic policies) and which addresses take node ports. Names and hashes
follow kube-proxy, so that its rules read the same here.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from labkit.topology.model import Topology, key_name
from labkit.topology.services_alloc import (
    ServiceEndpoint,
    health_check_key,
    node_port_key,
    port_key,
)

# The packet mark that asks for masquerading on the way out (kube-proxy's, both modes).
MASQ_MARK = "0x4000"


@dataclass(frozen=True)
class EndpointPlan:
    """One backend of a service port: the pod's IP and the target port."""

    ip: IPv4Address
    port: int
    pod: str = ""
    node: str = ""  # where the pod runs: decides Local traffic policies
    ready: bool = True
    serving: bool = True
    terminating: bool = False

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class ServicePortPlan:
    """One port of one service, with its endpoints (ordered as kube-proxy orders them)."""

    namespace: str
    service: str
    port_name: str  # "" for an unnamed port
    protocol: str  # "TCP" | "UDP" | "SCTP"
    vip: IPv4Address
    port: int
    node_port: int | None = None
    affinity_seconds: int | None = None  # ClientIP affinity timeout, None without
    endpoints: tuple[EndpointPlan, ...] = ()
    external_ips: tuple[IPv4Address, ...] = ()
    lb_ips: tuple[IPv4Address, ...] = ()  # the LoadBalancer's assigned addresses
    source_ranges: tuple[IPv4Network, ...] = ()  # loadBalancerSourceRanges
    external_local: bool = False  # externalTrafficPolicy: Local
    internal_local: bool = False  # internalTrafficPolicy: Local
    health_check_node_port: int | None = None

    @property
    def name(self) -> str:
        """kube-proxy's ServicePortName: `namespace/service[:port]`."""
        base = f"{self.namespace}/{self.service}"
        return f"{base}:{self.port_name}" if self.port_name else base

    @property
    def proto(self) -> str:
        return self.protocol.lower()

    # kube-proxy's ServicePort predicates (pkg/proxy/serviceport.go).
    @property
    def externally_accessible(self) -> bool:
        return self.node_port is not None or bool(self.lb_ips) or bool(self.external_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        return not self.internal_local or (self.externally_accessible and not self.external_local)

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_local or (self.externally_accessible and self.external_local)


@dataclass(frozen=True)
class ProxyPlan:
    cluster_cidr: IPv4Network  # the pod CIDR: traffic from outside it is masqueraded
    services: tuple[ServicePortPlan, ...] = ()
    node: str = ""  # the node the plan is for ("" : no endpoint is local)
    node_ips: tuple[IPv4Address, ...] = ()  # its primary addresses (nftables node ports)
    service_cidr: IPv4Network | None = None  # nftables: unallocated addresses in it dropped
    localhost_node_ports: bool = True  # kube-proxy's --iptables-localhost-nodeports

    def by_name(self) -> dict[tuple[str, str], ServicePortPlan]:
        return {(s.name, s.proto): s for s in self.services}


@dataclass(frozen=True)
class Endpoints:
    """kube-proxy's CategorizeEndpoints: which endpoints each traffic policy uses on a node."""

    cluster: tuple[EndpointPlan, ...]
    local: tuple[EndpointPlan, ...]
    reachable: tuple[EndpointPlan, ...]  # every endpoint a chain is written for
    any: bool  # usable endpoints anywhere (not only here)


def categorize(service: ServicePortPlan, node: str) -> Endpoints:
    """Ready endpoints, else serving-terminating ones (kube-proxy's fallback), per policy."""
    eps = service.endpoints
    cluster: tuple[EndpointPlan, ...] = ()
    has_any = False
    if service.uses_cluster_endpoints:
        cluster = tuple(e for e in eps if e.ready) or tuple(
            e for e in eps if e.serving and e.terminating
        )
        has_any = bool(cluster)
    if not service.uses_local_endpoints:
        return Endpoints(cluster, (), cluster, has_any)
    usable = [e for e in eps if e.ready or (e.serving and e.terminating)]
    has_any = has_any or bool(usable)
    mine = [e for e in eps if node and e.node == node]
    local = tuple(e for e in mine if e.ready) or tuple(
        e for e in mine if e.serving and e.terminating
    )
    if not service.uses_cluster_endpoints:
        return Endpoints((), local, local, has_any)
    reachable = cluster + tuple(e for e in local if e not in cluster)
    return Endpoints(cluster, local, sort_endpoints(reachable), has_any)


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


# -- from the topology ------------------------------------------------------------


def build_plan(
    topology: Topology,
    vips: Mapping[str, IPv4Address],
    node_ports: Mapping[str, int],
    endpoints: Mapping[str, Sequence[ServiceEndpoint]],
    *,
    lb_ips: Mapping[str, IPv4Address] | None = None,
    node: str = "",
    node_ips: Sequence[IPv4Address] = (),
) -> ProxyPlan:
    """What `node` programs: one entry per port of each service with a ClusterIP.

    `lb_ips` from `lb_pool.allocate_lb_ips`; `node_ips` the node's primary
    addresses (where nftables answers node ports). Headless and ExternalName
    services are DNS only: kube-proxy ignores them."""
    lb_ips = lb_ips or {}
    services = []
    for name, service in topology.services.items():
        if not service.has_cluster_ip:
            continue
        affinity = service.affinity_timeout if service.session_affinity == "ClientIP" else None
        local_external = service.external_traffic_policy == "Local"
        health = node_ports.get(health_check_key(name)) if local_external else None
        for port in service.ports:
            key = port_key(port)
            backends = [
                EndpointPlan(
                    endpoint.ip,
                    endpoint.ports[key],
                    endpoint.pod,
                    node=endpoint.node,
                    ready=endpoint.ready,
                    terminating=endpoint.terminating,
                )
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
                    external_ips=tuple(service.external_ips),
                    lb_ips=(lb_ips[name],) if name in lb_ips else (),
                    source_ranges=tuple(service.load_balancer_source_ranges),
                    external_local=local_external,
                    internal_local=service.internal_traffic_policy == "Local",
                    health_check_node_port=health,
                )
            )
    cluster = topology.cluster
    return ProxyPlan(
        cluster.pod_cidr,
        tuple(services),
        node=node,
        node_ips=tuple(node_ips),
        service_cidr=cluster.service_cidr,
        localhost_node_ports=cluster.localhost_node_ports,
    )


# -- conntrack: what a change leaves behind ------------------------------------------


def conntrack_flushes(old: ProxyPlan, new: ProxyPlan) -> list[str]:
    """conntrack deletions after a change: `conntrack_cleanup.cleanup_commands` (kept
    under this name for the callers)."""
    from labkit.dataplane.conntrack_cleanup import cleanup_commands

    return cleanup_commands(old, new)


# -- state ----------------------------------------------------------------------------

_ADDRESS_LISTS = ("external_ips", "lb_ips")


def plan_to_json(plan: ProxyPlan) -> dict[str, Any]:
    services = []
    for s in plan.services:
        fields = {k: v for k, v in asdict(s).items() if k not in ("vip", "endpoints")}
        for name in (*_ADDRESS_LISTS, "source_ranges"):
            fields[name] = [str(a) for a in fields[name]]
        fields["vip"] = str(s.vip)
        fields["endpoints"] = [
            [str(e.ip), e.port, e.pod, e.node, e.ready, e.serving, e.terminating]
            for e in s.endpoints
        ]
        services.append(fields)
    return {
        "cluster_cidr": str(plan.cluster_cidr),
        "services": services,
        "node": plan.node,
        "node_ips": [str(a) for a in plan.node_ips],
        "service_cidr": str(plan.service_cidr) if plan.service_cidr else None,
        "localhost_node_ports": plan.localhost_node_ports,
    }


def plan_from_json(document: Mapping[str, Any]) -> ProxyPlan:
    """Also reads the state of older labkit versions (fewer fields)."""
    services = []
    for raw in document["services"]:
        fields = dict(raw)
        endpoints = tuple(
            EndpointPlan(IPv4Address(ip), port, *rest)
            for ip, port, *rest in fields.pop("endpoints")
        )
        for name in _ADDRESS_LISTS:
            fields[name] = tuple(IPv4Address(a) for a in fields.get(name, ()))
        fields["source_ranges"] = tuple(IPv4Network(n) for n in fields.get("source_ranges", ()))
        services.append(
            ServicePortPlan(**{**fields, "vip": IPv4Address(fields["vip"]), "endpoints": endpoints})
        )
    cidr = document.get("service_cidr")
    return ProxyPlan(
        IPv4Network(document["cluster_cidr"]),
        tuple(services),
        node=document.get("node", ""),
        node_ips=tuple(IPv4Address(a) for a in document.get("node_ips", ())),
        service_cidr=IPv4Network(cidr) if cidr else None,
        localhost_node_ports=document.get("localhost_node_ports", True),
    )
