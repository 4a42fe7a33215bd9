"""Checks of the pod network backend: what it needs of the underlay, and BGP settings."""

from __future__ import annotations

from collections.abc import Iterator

from labkit.errors import Problem
from labkit.topology.checks.common import member_problem
from labkit.topology.checks.underlay import (
    check_host_gw_adjacency,
    check_underlay_reachability,
)
from labkit.topology.model import Topology


def check_backend(topology: Topology) -> Iterator[Problem]:
    cluster = topology.cluster
    if cluster.backend == "host-gw":
        yield from check_host_gw_adjacency(topology)
    elif cluster.backend != "none":
        yield from check_underlay_reachability(topology)
    yield from _check_bgp(topology)


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
    for index in range(len(bgp.route_reflectors)):
        problem = member_problem(
            topology,
            bgp.route_reflectors,
            index,
            unknown="route reflector {node} is not a node (cluster nodes: {members})",
            other_role="route reflector {node} is a {roles} node, not a cluster node "
            "(cluster nodes: {members})",
            twice="route reflector {node} is listed twice",
        )
        if problem is not None:
            yield Problem(("cluster", "bgp", "route_reflectors", index), problem)
