"""Service checks: VIPs, ports and node ports, target port names."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address

from labkit.errors import Problem
from labkit.topology.model import Service, Topology, key_name
from labkit.topology.services_alloc import (
    DNS_NAMESPACE,
    DNS_SERVICE,
    NODE_PORT_RANGE,
    dns_vip,
    selects,
)


def _is_cluster_dns(name: str, service: Service, vip: IPv4Address, topology: Topology) -> bool:
    """The kube-dns Service itself holds the DNS address (labkit adds it as an addon)."""
    return (
        key_name(name) == DNS_SERVICE
        and service.namespace == DNS_NAMESPACE
        and vip == dns_vip(topology.cluster)
    )


def check_services(topology: Topology) -> Iterator[Problem]:
    """VIPs inside the service CIDR and unique, node ports in range and unique, target ports
    that exist. A selector that matches nothing is allowed (the service refuses connections)."""
    cidr = topology.cluster.service_cidr
    vips: dict[IPv4Address, str] = {dns_vip(topology.cluster): "the cluster DNS"}
    node_ports: dict[int, str] = {}
    for name, service in topology.services.items():
        pinned = service.pinned_vip
        if pinned is not None:
            path = ("services", name, "vip")
            if pinned not in cidr:
                yield Problem(path, f"{pinned} is outside the service CIDR {cidr}")
            elif pinned in vips and not _is_cluster_dns(name, service, pinned, topology):
                yield Problem(path, f"{pinned} is taken by {vips[pinned]}")
            vips[pinned] = f"service {name!r}"
        yield from _check_service_ports(name, service)
        yield from _check_target_port_names(topology, name, service)
        own: set[int] = set()
        for index, port in enumerate(service.ports):
            if port.node_port is None or port.node_port in own:
                continue
            own.add(port.node_port)
            if port.node_port in node_ports:
                yield Problem(
                    ("services", name, "ports", index, "node_port"),
                    f"node port {port.node_port} is taken by {node_ports[port.node_port]}",
                )
            node_ports[port.node_port] = f"service {name!r}"
        health = service.health_check_node_port
        if health is not None and service.needs_health_check_node_port:
            path = ("services", name, "health_check_node_port")
            if health not in NODE_PORT_RANGE:
                yield Problem(path, f"node port {health} is out of range 30000-32767")
            elif health in node_ports:
                yield Problem(path, f"node port {health} is taken by {node_ports[health]}")
            node_ports[health] = f"service {name!r} (health check)"


def _check_service_ports(name: str, service: Service) -> Iterator[Problem]:
    base: tuple[str | int, ...] = ("services", name, "ports")
    seen_names: set[str] = set()
    seen_ports: set[tuple[int, str]] = set()
    for index, port in enumerate(service.ports):
        if len(service.ports) > 1 and not port.name:
            yield Problem((*base, index), "a service with several ports must name each of them")
        if port.name and port.name in seen_names:
            yield Problem((*base, index, "name"), f"port name {port.name!r} is used twice")
        if (port.port, port.protocol) in seen_ports:
            yield Problem(
                (*base, index, "port"), f"port {port.port}/{port.protocol} is listed twice"
            )
        seen_names.add(port.name or "")
        seen_ports.add((port.port, port.protocol))
        if port.node_port is not None:
            if not service.has_node_ports:
                yield Problem((*base, index, "node_port"), "a node port needs `type: NodePort`")
            elif port.node_port not in NODE_PORT_RANGE:
                yield Problem(
                    (*base, index, "node_port"),
                    f"node port {port.node_port} is out of range 30000-32767",
                )


def _check_target_port_names(topology: Topology, name: str, service: Service) -> Iterator[Problem]:
    picked = [pod for pod in topology.pods.values() if selects(service, pod)]
    candidates = picked or list(topology.pods.values())
    for index, port in enumerate(service.ports):
        if not isinstance(port.target_port, str):
            continue
        declared = {p.name for pod in candidates for p in pod.ports if p.protocol == port.protocol}
        if port.target_port not in declared:
            whose = "the pods its selector picks" if picked else "any pod"
            yield Problem(
                ("services", name, "ports", index, "target_port"),
                f"no {port.protocol} port named {port.target_port!r} is declared by {whose}",
            )
