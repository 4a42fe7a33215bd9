"""Checks that relate one part of a topology to another.

Each check returns `Problem`s with the path of the offending value, so the
loader can point at its line. Nothing here touches Docker.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Network

from labkit.errors import Problem
from labkit.topology.model import Topology

NODE_PORT_RANGE = range(30000, 32768)


def check_references(topology: Topology) -> list[Problem]:
    problems: list[Problem] = []
    for check in CHECKS:
        problems.extend(check(topology))
    return problems


def _known(names: object) -> str:
    return ", ".join(sorted(names))  # type: ignore[call-overload]


def check_networks(topology: Topology) -> Iterator[Problem]:
    for name, node in topology.nodes.items():
        if not node.networks and len(topology.networks) != 1:
            yield Problem(("nodes", name, "networks"), "say which networks the node is on")
        for index, network in enumerate(node.networks):
            if network not in topology.networks:
                yield Problem(
                    ("nodes", name, "networks", index),
                    f"unknown network {network!r} (known: {_known(topology.networks)})",
                )
        if len(set(node.networks)) != len(node.networks):
            yield Problem(("nodes", name, "networks"), "a network is listed twice")
        if "router" in node.roles and len(networks_of(topology, name)) < 2:
            yield Problem(
                ("nodes", name, "roles"), "a router must be on at least two networks"
            )
        for index, (destination, router) in enumerate(node.routes.items()):
            if destination not in topology.networks:
                yield Problem(("nodes", name, "routes", destination), "unknown network")
            if router not in topology.nodes:
                yield Problem(("nodes", name, "routes", destination), f"unknown node {router!r}")
            elif "router" not in topology.nodes[router].roles:
                yield Problem(
                    ("nodes", name, "routes", destination), f"node {router!r} is not a router"
                )
            elif destination in topology.networks:
                yield from _check_route_via(topology, name, destination, router)
            del index


def _check_route_via(
    topology: Topology, node: str, destination: str, router: str
) -> Iterator[Problem]:
    """A static route's router must be on the destination and next to the node."""
    path = ("nodes", node, "routes", destination)
    on = networks_of(topology, router)
    if destination not in on:
        yield Problem(
            path, f"router {router!r} is not on network {destination!r} (it is on {_known(on)})"
        )
    if not set(on) & set(networks_of(topology, node)):
        yield Problem(
            path,
            f"router {router!r} shares no network with node {node!r} "
            f"(router on {_known(on)}; node on {_known(networks_of(topology, node))})",
        )


def check_cidrs(topology: Topology) -> Iterator[Problem]:
    cluster = topology.cluster
    ranges: list[tuple[tuple[str | int, ...], IPv4Network]] = [
        (("cluster", "pod_cidr"), cluster.pod_cidr),
        (("cluster", "service_cidr"), cluster.service_cidr),
    ]
    ranges += [
        (("networks", name, "subnet"), net.subnet)
        for name, net in topology.networks.items()
        if net.subnet is not None
    ]
    for i, (path_a, net_a) in enumerate(ranges):
        for path_b, net_b in ranges[i + 1 :]:
            if net_a.overlaps(net_b):
                yield Problem(path_b, f"{net_b} overlaps {'.'.join(map(str, path_a))} ({net_a})")
    for name, net in topology.networks.items():
        if net.subnet is not None and net.subnet.prefixlen > 29:
            yield Problem(("networks", name, "subnet"), f"{net.subnet} is too small (max /29)")
        elif net.subnet is not None:
            on_it = [node for node in topology.nodes if name in networks_of(topology, node)]
            if len(on_it) + 2 > net.subnet.num_addresses - 2:
                yield Problem(
                    ("networks", name, "subnet"),
                    f"{net.subnet} has no room for {len(on_it)} nodes",
                )
    if cluster.node_prefix < cluster.pod_cidr.prefixlen:
        yield Problem(
            ("cluster", "node_prefix"),
            f"/{cluster.node_prefix} is larger than the pod CIDR {cluster.pod_cidr}",
        )
    else:
        members = len(topology.member_nodes())
        available = 2 ** (cluster.node_prefix - cluster.pod_cidr.prefixlen)
        if members > available:
            yield Problem(
                ("cluster", "pod_cidr"),
                f"{cluster.pod_cidr} gives only {available} node subnets of "
                f"/{cluster.node_prefix}, the topology has {members} nodes",
            )


def check_pods(topology: Topology) -> Iterator[Problem]:
    members = topology.member_nodes()
    seen_ips: dict[object, str] = {}
    host_ports: dict[tuple[str, int, str], str] = {}
    for name, pod in topology.pods.items():
        if pod.node not in topology.nodes:
            yield Problem(
                ("pods", name, "node"), f"unknown node {pod.node!r} (known: {_known(members)})"
            )
        elif pod.node not in members:
            yield Problem(
                ("pods", name, "node"),
                f"node {pod.node!r} is a {'/'.join(topology.nodes[pod.node].roles)}, "
                "it runs no pods",
            )
        if pod.ip is not None:
            if pod.ip in seen_ips:
                yield Problem(("pods", name, "ip"), f"{pod.ip} is pinned by pod {seen_ips[pod.ip]!r} too")
            seen_ips[pod.ip] = name
            if pod.ip not in topology.cluster.pod_cidr:
                yield Problem(
                    ("pods", name, "ip"), f"{pod.ip} is outside the pod CIDR {topology.cluster.pod_cidr}"
                )
        for index, port in enumerate(pod.ports):
            if port.host_port is None:
                continue
            key = (pod.node, port.host_port, port.protocol)
            if key in host_ports:
                yield Problem(
                    ("pods", name, "ports", index, "host_port"),
                    f"host port {port.host_port}/{port.protocol} on node {pod.node!r} is "
                    f"taken by pod {host_ports[key]!r}",
                )
            host_ports[key] = name


def check_backend(topology: Topology) -> Iterator[Problem]:
    cluster = topology.cluster
    if cluster.backend == "host-gw":
        yield from _check_host_gw_adjacency(topology)
    elif cluster.backend != "none":
        yield from _check_underlay_reachability(topology)
    yield from _check_bgp(topology)


def _apart(topology: Topology) -> list[tuple[str, str]]:
    """Pairs of cluster nodes that share no underlay network."""
    members = topology.member_nodes()
    return [
        (a, b)
        for i, a in enumerate(members)
        for b in members[i + 1 :]
        if not set(networks_of(topology, a)) & set(networks_of(topology, b))
    ]


def _on(topology: Topology, node: str) -> str:
    return f"{node} (on {_known(networks_of(topology, node)) or 'no network'})"


def _check_host_gw_adjacency(topology: Topology) -> Iterator[Problem]:
    apart = _apart(topology)
    if apart:
        pairs = "; ".join(f"{_on(topology, a)} and {_on(topology, b)}" for a, b in apart)
        yield Problem(
            ("cluster", "backend"),
            "host-gw routes each node's pod subnet via that node's underlay address, so every "
            "pair of nodes must share one L2 segment (underlay network); these nodes are not "
            f"adjacent: {pairs}. Across routers use vxlan, udp or bgp",
        )


def _check_underlay_reachability(topology: Topology) -> Iterator[Problem]:
    """Nodes on different segments need a router on both (the backend's peers)."""
    routers = [name for name, node in topology.nodes.items() if "router" in node.roles]
    for a, b in _apart(topology):
        nets_a, nets_b = set(networks_of(topology, a)), set(networks_of(topology, b))
        joined = any(
            nets_a & set(networks_of(topology, r)) and nets_b & set(networks_of(topology, r))
            for r in routers
        )
        if not joined:
            yield Problem(
                ("nodes", b, "networks"),
                f"node {_on(topology, b)} cannot reach node {_on(topology, a)}: no router is on "
                f"both a network of {a} and a network of {b}, and the "
                f"{topology.cluster.backend} backend needs every node to reach every other",
            )


def _check_bgp(topology: Topology) -> Iterator[Problem]:
    bgp = topology.cluster.bgp
    if not (1 <= bgp.asn <= 4294967295):
        yield Problem(
            ("cluster", "bgp", "asn"), f"AS number {bgp.asn} is out of range 1-4294967295"
        )
    if bgp.keepalive >= bgp.hold_time:
        yield Problem(
            ("cluster", "bgp", "keepalive"),
            f"keepalive {bgp.keepalive} s must be shorter than the hold time {bgp.hold_time} s "
            "(a third of it is usual)",
        )
    members = topology.member_nodes()
    for index, reflector in enumerate(bgp.route_reflectors):
        path = ("cluster", "bgp", "route_reflectors", index)
        if reflector not in topology.nodes:
            yield Problem(
                path,
                f"route reflector {reflector!r} is not a node (cluster nodes: {_known(members)})",
            )
        elif reflector not in members:
            roles = "/".join(topology.nodes[reflector].roles)
            yield Problem(
                path,
                f"route reflector {reflector!r} is a {roles} node, it runs no BGP "
                f"(cluster nodes: {_known(members)})",
            )
        elif reflector in bgp.route_reflectors[:index]:
            yield Problem(path, f"route reflector {reflector!r} is listed twice")


def networks_of(topology: Topology, node: str) -> list[str]:
    """The networks a node is on, the default (the only network) filled in."""
    listed = topology.nodes[node].networks
    if listed:
        return list(listed)
    return list(topology.networks)[:1] if len(topology.networks) == 1 else []


CHECKS = [check_networks, check_cidrs, check_pods, check_backend]
