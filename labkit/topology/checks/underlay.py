"""Underlay checks: networks and static routes, address ranges, and whether
cluster nodes can reach each other (what the backend needs of the underlay)."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Network

from labkit.errors import Problem
from labkit.topology.checks.common import known
from labkit.topology.model import Topology
from labkit.topology.networks import networks_of


def check_networks(topology: Topology) -> Iterator[Problem]:
    for name, node in topology.nodes.items():
        if not node.networks and len(topology.networks) != 1:
            yield Problem(("nodes", name, "networks"), "say which networks the node is on")
        for index, network in enumerate(node.networks):
            if network not in topology.networks:
                yield Problem(
                    ("nodes", name, "networks", index),
                    f"unknown network {network!r} (known: {known(topology.networks)})",
                )
        if len(set(node.networks)) != len(node.networks):
            yield Problem(("nodes", name, "networks"), "a network is listed twice")
        if "router" in node.roles and len(networks_of(topology, name)) < 2:
            yield Problem(("nodes", name, "roles"), "a router must be on at least two networks")
        for destination, router in node.routes.items():
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


def _check_route_via(
    topology: Topology, node: str, destination: str, router: str
) -> Iterator[Problem]:
    """A static route's router must be on the destination and next to the node."""
    path = ("nodes", node, "routes", destination)
    on = networks_of(topology, router)
    if destination not in on:
        yield Problem(
            path, f"router {router!r} is not on network {destination!r} (it is on {known(on)})"
        )
    if not set(on) & set(networks_of(topology, node)):
        yield Problem(
            path,
            f"router {router!r} shares no network with node {node!r} "
            f"(router on {known(on)}; node on {known(networks_of(topology, node))})",
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


def _apart(topology: Topology) -> list[tuple[str, str]]:
    """Pairs of cluster nodes that share no underlay network.

    Nodes on an unknown network or on none are left out: that has its own problem.
    """
    members = [
        node
        for node in topology.member_nodes()
        if networks_of(topology, node)
        and all(net in topology.networks for net in networks_of(topology, node))
    ]
    return [
        (a, b)
        for i, a in enumerate(members)
        for b in members[i + 1 :]
        if not set(networks_of(topology, a)) & set(networks_of(topology, b))
    ]


def _on(topology: Topology, node: str) -> str:
    return f"{node} (on {known(networks_of(topology, node)) or 'no network'})"


def check_host_gw_adjacency(topology: Topology) -> Iterator[Problem]:
    apart = _apart(topology)
    if apart:
        pairs = "; ".join(f"{_on(topology, a)} and {_on(topology, b)}" for a, b in apart)
        yield Problem(
            ("cluster", "backend"),
            "host-gw routes each node's pod subnet via that node's underlay address, so every "
            "pair of nodes must share one L2 segment (underlay network); these nodes are not "
            f"adjacent: {pairs}. Across routers use vxlan, udp or bgp",
        )


def check_underlay_reachability(topology: Topology) -> Iterator[Problem]:
    """Nodes on different segments need a router on both (the backend's peers)."""
    routers = [name for name, node in topology.nodes.items() if "router" in node.roles]
    cut_off: dict[str, list[str]] = {}
    for a, b in _apart(topology):
        nets_a, nets_b = set(networks_of(topology, a)), set(networks_of(topology, b))
        joined = any(
            nets_a & set(networks_of(topology, r)) and nets_b & set(networks_of(topology, r))
            for r in routers
        )
        if not joined:
            cut_off.setdefault(b, []).append(a)
    for node, peers in cut_off.items():
        yield Problem(
            ("nodes", node, "networks"),
            f"node {_on(topology, node)} cannot reach "
            f"{', '.join(_on(topology, peer) for peer in peers)}: no router is on both networks, "
            f"and the {topology.cluster.backend} backend needs every node to reach every other",
        )
