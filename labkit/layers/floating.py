"""The floating IP layer: each floating IP leads to its pod, wherever the pod runs.

Every change of pods re-plans every node (a move changes the owner's DNAT and
everybody's route); nodes whose script did not change are left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from labkit.dataplane import floating as plan
from labkit.layers.base import BaseLayer
from labkit.layers.push import push_changed

if TYPE_CHECKING:
    from labkit.core.cluster import Cluster

STATE_KEY = "floating"


def _applied(cluster: Cluster) -> dict[str, str]:
    state: dict[str, str] = cluster.state.setdefault(STATE_KEY, {})
    return state


def push(cluster: Cluster, *, force: bool) -> list[str]:
    """Run the script of every node whose plan changed (all with `force`); those nodes."""
    wanted = plan.plan(cluster.topology, cluster.addresses)
    return list(push_changed(cluster, wanted, _applied(cluster), force=force))


class FloatingLayer(BaseLayer):
    name = "floating IPs"

    def wanted(self, cluster: Cluster) -> bool:
        return bool(cluster.topology.floating_ips)

    def check(self, cluster: Cluster) -> None:
        """Nothing to probe: the loader keeps floating IPs out of every subnet labkit may use."""

    def apply(self, cluster: Cluster) -> None:
        push(cluster, force=True)

    def sync(self, cluster: Cluster, changed_pods: Sequence[str]) -> None:
        push(cluster, force=False)

    def describe(self, cluster: Cluster) -> dict[str, Any]:
        return {
            "floating_ips": {
                b.name: {
                    "ip": str(b.ip),
                    "pod": b.pod,
                    "node": b.owner,
                    "pod_ip": str(b.pod_ip) if b.pod_ip else None,
                }
                for b in plan.bindings(cluster.topology, cluster.addresses.pod_ips)
            }
        }
