"""Which underlay networks a node is on.

Its own module because both the address planner and the checks need it, and
the checks use the address planner.
"""

from __future__ import annotations

from labkit.topology.model import Topology


def networks_of(topology: Topology, node: str) -> list[str]:
    """The networks a node is on, the default (the only network) filled in."""
    listed = topology.nodes[node].networks
    if listed:
        return list(listed)
    return list(topology.networks)[:1] if len(topology.networks) == 1 else []
