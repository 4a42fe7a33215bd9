"""Ingress and VRRP checks: edge nodes, routing rules and their backends, the VIP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network

from labkit.errors import Problem
from labkit.topology.addressing import FIRST_NODE_HOST, node_addresses
from labkit.topology.checks.common import known, member_problem
from labkit.topology.model import Topology
from labkit.topology.networks import networks_of

# A DNS name as an Ingress host: no port, no wildcard, lower case.
HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
# Characters that have a meaning in a proxy's configuration syntax.
PATH_FORBIDDEN = re.compile(r"[\s{};\"'#\\]")
VRRP_PRIORITIES = range(1, 255)  # 255 belongs to the owner of the address, 0 means "leaving"


def check_ingress(topology: Topology) -> Iterator[Problem]:
    ingress = topology.ingress
    if ingress is None:
        return
    vrrp = topology.vrrp
    for index, node in enumerate(ingress.nodes):
        path = ("ingress", "nodes", index)
        problem = member_problem(
            topology,
            ingress.nodes,
            index,
            unknown="unknown node {node} (cluster nodes: {members})",
            other_role="node {node} is a {roles} node; an edge node must be a cluster node "
            "(its proxy sends to pod IPs and Service VIPs; cluster nodes: {members})",
            twice="node {node} is listed twice",
        )
        if problem is not None:
            yield Problem(path, problem)
        elif vrrp is not None and vrrp.network in topology.networks:
            on = networks_of(topology, node)
            if vrrp.network not in on:
                yield Problem(
                    path,
                    f"edge node {node!r} is not on network {vrrp.network!r} of the VRRP VIP "
                    f"(it is on {known(on) or 'no network'})",
                )
    seen: dict[tuple[str | None, str], int] = {}
    for index, rule in enumerate(ingress.rules):
        path = ("ingress", "rules", index)
        yield from _ingress_backend(topology, path, rule.service, rule.port)
        if rule.host is not None and not HOST_NAME.match(rule.host):
            yield Problem(
                (*path, "host"),
                f"host {rule.host!r} is not a DNS name (lower case letters, digits, dashes and "
                "dots; no port, no wildcard)",
            )
        if not rule.path.startswith("/"):
            yield Problem((*path, "path"), f"path {rule.path!r} must start with '/'")
            continue
        if PATH_FORBIDDEN.search(rule.path):
            yield Problem(
                (*path, "path"), f"path {rule.path!r} has a space, quote, brace, ';', '#' or '\\'"
            )
        key = _route_key(rule.host, rule.path, rule.path_type == "Exact")
        if key in seen:
            yield Problem(
                (*path, "path"),
                f"host {rule.host or '(any)'} path {rule.path} is routed by "
                f"ingress.rules.{seen[key]} already",
            )
        seen.setdefault(key, index)
    if ingress.default_backend is not None:
        backend = ingress.default_backend
        yield from _ingress_backend(
            topology, ("ingress", "default_backend"), backend.service, backend.port
        )
    yield from _check_tls(topology)


def _check_tls(topology: Topology) -> Iterator[Problem]:
    ingress = topology.ingress
    assert ingress is not None
    for index, entry in enumerate(ingress.tls):
        for h, host in enumerate(entry.hosts):
            if not HOST_NAME.match(host.removeprefix("*.")):
                yield Problem(
                    ("ingress", "tls", index, "hosts", h),
                    f"host {host!r} is not a DNS name (a wildcard only as `*.` in front)",
                )
    if ingress.tls and ingress.tls_port in (ingress.port, *ingress.tcp):
        yield Problem(
            ("ingress", "tls_port"),
            f"port {ingress.tls_port} is taken by the ingress's HTTP or a TCP entry already",
        )


def _ingress_backend(
    topology: Topology, path: tuple[str | int, ...], service: str, port: int | str
) -> Iterator[Problem]:
    spec = topology.services.get(service)
    if spec is None:
        yield Problem(
            (*path, "service"),
            f"unknown service {service!r} (known: {known(topology.services) or 'none'})",
        )
        return
    matching = [p for p in spec.ports if port in (p.name, p.port, p.name or str(p.port))]
    if not matching:
        ports = ", ".join(f"{p.port}" + (f" ({p.name})" if p.name else "") for p in spec.ports)
        yield Problem((*path, "port"), f"service {service!r} has no port {port!r} (ports: {ports})")
    elif matching[0].protocol != "TCP":
        yield Problem(
            (*path, "port"), f"port {port!r} of service {service!r} is UDP; an ingress proxies HTTP"
        )


def _route_key(host: str | None, path: str, exact: bool) -> tuple[str | None, str]:
    """Prefix paths ignore a trailing slash, as Kubernetes does."""
    return host, path if exact or path == "/" else (path.rstrip("/") or "/")


def check_vrrp(topology: Topology) -> Iterator[Problem]:
    vrrp = topology.vrrp
    if vrrp is None:
        return
    known_network = vrrp.network in topology.networks
    if not known_network:
        yield Problem(
            ("vrrp", "network"),
            f"unknown network {vrrp.network!r} (known: {known(topology.networks)})",
        )
    first_with: dict[int, str] = {}
    for node, priority in vrrp.priorities.items():
        path = ("vrrp", "priorities", node)
        if node not in topology.nodes:
            yield Problem(path, f"unknown node {node!r} (known: {known(topology.nodes)})")
        elif known_network and vrrp.network not in networks_of(topology, node):
            on = networks_of(topology, node)
            yield Problem(
                path,
                f"node {node!r} is not on network {vrrp.network!r} (it is on "
                f"{known(on) or 'no network'}): it cannot hold the VIP",
            )
        elif topology.ingress is not None and node not in topology.ingress.nodes:
            yield Problem(
                path,
                f"node {node!r} runs no ingress controller (ingress.nodes: "
                f"{known(topology.ingress.nodes)}): the VIP would lead nowhere",
            )
        if priority not in VRRP_PRIORITIES:
            yield Problem(
                path, f"priority {priority} is out of range 1-254 (255 is the address owner's)"
            )
        elif priority in first_with:
            yield Problem(
                path,
                f"priority {priority} ties with node {first_with[priority]!r}: VRRP would "
                "settle it by the higher IP address; give each node its own priority",
            )
        first_with.setdefault(priority, node)
    centiseconds = vrrp.advert_interval * 100
    if abs(centiseconds - round(centiseconds)) > 1e-6 or not 1 <= round(centiseconds) <= 4095:
        yield Problem(
            ("vrrp", "advert_interval"),
            f"{vrrp.advert_interval:g} s: VRRPv3 counts in centiseconds, 0.01 to 40.95 s",
        )
    subnet = topology.networks[vrrp.network].subnet if known_network else None
    if subnet is not None:
        yield from _vip_in_subnet(topology, vrrp.vip, vrrp.network, subnet)


def _vip_in_subnet(
    topology: Topology, vip: IPv4Address, network: str, subnet: IPv4Network
) -> Iterator[Problem]:
    """The VIP is a free host address of the (pinned) subnet."""
    path = ("vrrp", "vip")
    if vip not in subnet:
        yield Problem(path, f"{vip} is outside network {network!r} ({subnet})")
        return
    if vip in (subnet.network_address, subnet.broadcast_address):
        yield Problem(path, f"{vip} is the network or broadcast address of {subnet}")
        return
    if vip < subnet.network_address + FIRST_NODE_HOST:
        yield Problem(path, f"{vip} is the gateway address of network {network!r}")
    for node, addresses in node_addresses(topology, {network: subnet}).items():
        if addresses.get(network) == vip:
            yield Problem(path, f"{vip} is the address of node {node!r} on network {network!r}")
