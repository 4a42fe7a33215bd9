"""The egress layer: each cluster node masquerades its pods' traffic to outside
the cluster (dataplane/egress.py), as ip-masq-agent configures it.

The node script sets it up (at `up` and when a node comes back), so this layer
only checks and describes it; `lab.egress.set` switches it or changes the
non-masquerade CIDRs on a running lab.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network
from typing import Any

from labkit.concurrency import parallel
from labkit.core.cluster import Cluster
from labkit.dataplane import egress
from labkit.layers.base import BaseLayer
from labkit.runtime import features
from labkit.topology.edge_model import Masquerade


def _members(cluster: Cluster) -> list[str]:
    down = cluster.stopped_nodes()
    return [node for node in cluster.addresses.pod_subnets if node not in down]


def apply(cluster: Cluster) -> None:
    settings = cluster.topology.cluster

    def on_node(node: str) -> None:
        subnet = cluster.addresses.pod_subnets[node]
        script = (
            egress.masquerade_script(settings, subnet)
            if settings.masquerade.enabled
            else egress.unmasquerade_script(settings, subnet)
        )
        cluster.node(node).exec(script)

    parallel(on_node, _members(cluster))


class EgressControl:
    """Pod egress of a running lab (`lab.egress`)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    @property
    def settings(self) -> Masquerade:
        return self.cluster.topology.cluster.masquerade

    def set(
        self, *, enabled: bool | None = None, non_masquerade_cidrs: Sequence[str] | None = None
    ) -> None:
        """Change masquerading on every node (existing connections keep their NAT)."""
        changed = self.settings.model_copy()
        if enabled is not None:
            changed.enabled = enabled
        if non_masquerade_cidrs is not None:
            changed.non_masquerade_cidrs = [IPv4Network(c) for c in non_masquerade_cidrs]
        self.cluster.topology.cluster.masquerade = changed
        apply(self.cluster)
        self.cluster.save()

    def non_masquerade_cidrs(self) -> list[str]:
        return [str(c) for c in egress.non_masquerade_cidrs(self.cluster.topology.cluster)]


class EgressLayer(BaseLayer):
    name = "egress"

    def wanted(self, cluster: Cluster) -> bool:
        return bool(cluster.addresses.pod_subnets)

    def check(self, cluster: Cluster) -> None:
        if cluster.topology.cluster.masquerade.enabled:
            features.require("iptables", "pod egress masquerading (cluster.masquerade)")

    def describe(self, cluster: Cluster) -> dict[str, Any]:
        settings = cluster.topology.cluster
        return {
            "egress": {
                "masquerade": settings.masquerade.enabled,
                "non_masquerade_cidrs": [str(c) for c in egress.non_masquerade_cidrs(settings)],
            }
        }
