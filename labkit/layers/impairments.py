"""The impairments layer: each link's rate, delay, jitter and loss from the file.

Applied after the other layers (they converge and check on clean links), and
again whenever a node comes back (its interfaces are new). A link a fault
shapes now keeps the fault's qdisc: the fault is set over the topology's and
its revert restores the topology's (see `labkit.faults`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from labkit.concurrency import parallel
from labkit.dataplane.impairments import plan_impairments, shaping_script
from labkit.layers.base import BaseLayer
from labkit.runtime import features
from labkit.topology.graph import live_from_faults
from labkit.topology.impairments import link_impairments, refuse_missing_features

if TYPE_CHECKING:
    from labkit.core.cluster import Cluster

FAULTS_KEY = "faults"  # the fault journal's slice of the state (read only here)


def _shaped_by_faults(cluster: Cluster) -> set[tuple[str, str]]:
    active = cluster.state.get(FAULTS_KEY, {}).get("active", [])
    return set(live_from_faults(active, cluster.topology).shaped_links)


class ImpairmentsLayer(BaseLayer):
    name = "impairments"

    def wanted(self, cluster: Cluster) -> bool:
        return bool(link_impairments(cluster.topology))

    def check(self, cluster: Cluster) -> None:
        refuse_missing_features(cluster.topology, features.has, features.missing_reason)

    def apply(self, cluster: Cluster) -> None:
        shaped, stopped = _shaped_by_faults(cluster), cluster.stopped_nodes()
        todo = {
            node: [link for link in links if (node, link.network) not in shaped]
            for node, links in plan_impairments(cluster.topology, cluster.addresses).items()
            if node not in stopped
        }
        todo = {node: links for node, links in todo.items() if links}
        parallel(lambda node: cluster.node(node).exec(shaping_script(todo[node])), todo)

    def describe(self, cluster: Cluster) -> dict[str, Any]:
        shaped = _shaped_by_faults(cluster)
        return {
            "impairments": [
                {
                    "node": link.node,
                    "network": link.network,
                    "impair": str(link.impairment),
                    "qdisc": link.qdisc,
                    **(
                        {"note": "a fault shapes it now (labkit fault list)"}
                        if (link.node, link.network) in shaped
                        else {}
                    ),
                }
                for links in plan_impairments(cluster.topology, cluster.addresses).values()
                for link in links
            ]
        }
