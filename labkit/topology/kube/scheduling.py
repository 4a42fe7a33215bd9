"""Where workload pods run, decided as a scheduler would (the parts labkit models).

`nodeName` binds; `nodeSelector` filters nodes by their labels (plus the
well-known `kubernetes.io/hostname` and `kubernetes.io/os`); among the nodes
left the one with the fewest pods wins, ties going to the earlier node.
"""

from __future__ import annotations

from collections.abc import Mapping

from labkit.topology.model import Topology
from labkit.topology.placement import least_loaded

__all__ = ["HOSTNAME_LABEL", "OS_LABEL", "fitting_nodes", "least_loaded", "node_labels"]

HOSTNAME_LABEL = "kubernetes.io/hostname"
OS_LABEL = "kubernetes.io/os"


def node_labels(topology: Topology) -> dict[str, dict[str, str]]:
    """Every pod-running node's labels, the well-known ones included."""
    return {
        name: {HOSTNAME_LABEL: name, OS_LABEL: "linux", **topology.nodes[name].labels}
        for name in topology.member_nodes()
    }


def fitting_nodes(topology: Topology, node_selector: Mapping[str, str]) -> list[str]:
    labels = node_labels(topology)
    return [
        name
        for name in topology.member_nodes()
        if all(labels[name].get(key) == value for key, value in node_selector.items())
    ]
