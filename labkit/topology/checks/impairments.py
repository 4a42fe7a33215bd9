"""Impairment checks: a node's `impair` names a network it is on; jitter has a delay."""

from __future__ import annotations

from collections.abc import Iterator

from labkit.errors import Problem
from labkit.topology.checks.common import known
from labkit.topology.impairments import Path, link_impairments
from labkit.topology.model import Topology
from labkit.topology.networks import networks_of


def check_impairments(topology: Topology) -> Iterator[Problem]:
    for name, node in topology.nodes.items():
        on = networks_of(topology, name)
        for network in node.impair:
            path: Path = ("nodes", name, "impair", network)
            if network not in topology.networks:
                yield Problem(
                    path, f"unknown network {network!r} (known: {known(topology.networks)})"
                )
            elif network not in on:
                yield Problem(
                    path, f"node {name!r} is not on network {network!r} (it is on {known(on)})"
                )
    said: set[Path] = set()  # a network's jitter: once, not once per node
    for (node_name, network), impairment in link_impairments(topology).items():
        if impairment.jitter and not impairment.delay:
            own = topology.nodes[node_name].impair.get(network)
            path = (
                ("nodes", node_name, "impair", network, "jitter")
                if own is not None and own.jitter
                else ("networks", network, "impair", "jitter")
            )
            if path not in said:
                said.add(path)
                yield Problem(
                    path, f"jitter needs a delay (node {node_name!r} on network {network!r})"
                )
