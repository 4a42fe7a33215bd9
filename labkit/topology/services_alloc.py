"""Services, decided: ClusterIPs, node ports and endpoints. Pure, no Docker.

Allocation is sticky: what a running lab already handed out (`existing`) is
kept, so a service keeps its VIP and node port across changes, as in
Kubernetes. Pinned values win, then sticky ones, then the lowest free.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from labkit.errors import LabkitError
from labkit.topology.model import Cluster, Pod, Service, ServicePort, Topology

NODE_PORT_RANGE = range(30000, 32768)
DNS_VIP_OFFSET = 10  # 10.96.0.10 in the default service CIDR, by convention


DNS_SERVICE, DNS_NAMESPACE = "kube-dns", "kube-system"  # the cluster DNS, as kubeadm names it


def dns_vip(cluster: Cluster) -> IPv4Address:
    """The cluster DNS's address: the 10th address of the service CIDR."""
    return cluster.service_cidr.network_address + DNS_VIP_OFFSET


def port_key(port: ServicePort) -> str:
    """How a service port is named in endpoints and node ports: its name, else its number."""
    return port.name or str(port.port)


def node_port_key(service_name: str, port: ServicePort) -> str:
    """How node ports are keyed (allocation, state, the plan): `service/port-key`."""
    return f"{service_name}/{port_key(port)}"


def find_port(service: Service, wanted: int | str) -> ServicePort:
    """A service port by name or number (a number also matches an unnamed port's key)."""
    for port in service.ports:
        if wanted in (port.name, port.port, port_key(port)):
            return port
    known = ", ".join(port_key(p) for p in service.ports)
    raise LabkitError(f"service has no port {wanted!r} (ports: {known})")


def health_check_key(service_name: str) -> str:
    """How a service's health check node port is keyed among the node ports."""
    return f"{service_name}/health-check"


def allocate_vips(
    topology: Topology, existing: Mapping[str, IPv4Address] | None = None
) -> dict[str, IPv4Address]:
    """A ClusterIP per service that has one (not headless, not ExternalName): pinned,
    else kept from `existing`, else the lowest free."""
    existing = existing or {}
    cidr = topology.cluster.service_cidr
    taken: set[IPv4Address] = {dns_vip(topology.cluster)}
    wanted = [name for name, service in topology.services.items() if service.has_cluster_ip]
    result: dict[str, IPv4Address] = {}
    for name in wanted:
        pinned = topology.services[name].pinned_vip
        if pinned is not None:
            result[name] = pinned
            taken.add(pinned)
    for name in wanted:
        kept = existing.get(name)
        if name not in result and kept is not None and kept in cidr and kept not in taken:
            result[name] = kept
            taken.add(kept)
    free = _free_addresses(cidr, taken)
    for name in wanted:
        if name not in result:
            result[name] = next(free, None) or _full(f"service CIDR {cidr}")
    return {name: result[name] for name in wanted}


def _free_addresses(cidr: IPv4Network, taken: Collection[IPv4Address]) -> Iterator[IPv4Address]:
    return (address for address in cidr.hosts() if address not in taken)


def _full(what: str) -> IPv4Address:
    raise LabkitError(f"{what} is full")


def allocate_node_ports(
    topology: Topology, existing: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Node ports of NodePort and LoadBalancer services, keyed `service/port-key`, and the
    health check node port of LoadBalancers with a Local external policy, keyed
    `health_check_key(service)`: pinned, kept, lowest free."""
    existing = existing or {}
    wanted: list[tuple[str, int | None]] = []
    for name, service in topology.services.items():
        if service.has_node_ports:
            wanted += [(node_port_key(name, port), port.node_port) for port in service.ports]
        if service.needs_health_check_node_port:
            wanted.append((health_check_key(name), service.health_check_node_port))
    result = {key: pinned for key, pinned in wanted if pinned is not None}
    taken = set(result.values())
    for key, _ in wanted:
        kept = existing.get(key)
        if key not in result and kept is not None and kept in NODE_PORT_RANGE and kept not in taken:
            result[key] = kept
            taken.add(kept)
    free = (port for port in NODE_PORT_RANGE if port not in taken)
    for key, _ in wanted:
        if key not in result:
            chosen = next(free, None)
            if chosen is None:
                raise LabkitError("the node port range 30000-32767 is full")
            result[key] = chosen
    return {key: result[key] for key, _ in wanted}


@dataclass(frozen=True)
class ServiceEndpoint:
    """One ready pod behind a service: where each service port sends to."""

    pod: str
    ip: IPv4Address
    node: str
    ports: dict[str, int] = field(default_factory=dict)  # service port key -> target port
    ready: bool = True
    terminating: bool = False  # being deleted but still serving (kube-proxy's fallback)


def selects(service: Service, pod: Pod) -> bool:
    """A selector picks pods of the service's namespace carrying all its labels.

    An empty selector picks nothing: as in Kubernetes, such a service's
    endpoints are managed by hand, which labkit does not do.
    """
    return (
        bool(service.selector)
        and pod.namespace == service.namespace
        and all(pod.labels.get(key) == value for key, value in service.selector.items())
    )


def target_port(port: ServicePort, pod: Pod) -> int | None:
    """The pod's port a service port sends to; None when the pod has no port of that name."""
    if port.target_port is None:
        return port.port
    if isinstance(port.target_port, int):
        return port.target_port
    for declared in pod.ports:
        if declared.name == port.target_port and declared.protocol == port.protocol:
            return declared.port
    return None


def service_endpoints(
    service: Service,
    pods: Mapping[str, Pod],
    pod_ips: Mapping[str, IPv4Address],
    ready: Collection[str],
    terminating: Collection[str] = (),
) -> list[ServiceEndpoint]:
    """The ready pods the selector picks, in pod-name order, each with its target ports;
    `terminating` pods (being deleted, still serving) come as not ready, terminating."""
    endpoints = []
    for name in sorted(pods):
        pod = pods[name]
        serving = name in ready or name in terminating
        if not serving or name not in pod_ips or not selects(service, pod):
            continue
        ports = {port_key(p): t for p in service.ports if (t := target_port(p, pod)) is not None}
        if ports:
            is_ready = name in ready and name not in terminating
            endpoints.append(
                ServiceEndpoint(name, pod_ips[name], pod.node, ports, is_ready, not is_ready)
            )
    return endpoints
