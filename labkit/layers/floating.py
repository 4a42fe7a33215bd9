"""The floating IP layer: each floating IP leads to its pod, wherever the pod runs.

Every change of pods re-plans every node (a move changes the owner's DNAT and
everybody's route); nodes whose script did not change are left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from labkit.dataplane import floating as plan
from labkit.lab import LAYERS
from labkit.layers.push import push_changed

if TYPE_CHECKING:
    from labkit.lab import Lab

STATE_KEY = "floating"


def _applied(lab: Lab) -> dict[str, str]:
    state: dict[str, str] = lab.layer_state.setdefault(STATE_KEY, {})
    return state


def push(lab: Lab, *, force: bool) -> list[str]:
    """Run the script of every node whose plan changed (all with `force`); those nodes."""
    wanted = plan.plan(lab.topology, lab.addresses)
    return list(push_changed(lab, wanted, _applied(lab), force=force))


class FloatingLayer:
    name = "floating IPs"

    def wanted(self, lab: Lab) -> bool:
        return bool(lab.topology.floating_ips)

    def check(self, lab: Lab) -> None:
        """Nothing to probe: the loader keeps floating IPs out of every subnet labkit may use."""

    def apply(self, lab: Lab) -> None:
        push(lab, force=True)

    def sync(self, lab: Lab, changed_pods: Sequence[str]) -> None:
        push(lab, force=False)

    def describe(self, lab: Lab) -> dict[str, Any]:
        return {
            "floating_ips": {
                b.name: {
                    "ip": str(b.ip),
                    "pod": b.pod,
                    "node": b.owner,
                    "pod_ip": str(b.pod_ip) if b.pod_ip else None,
                }
                for b in plan.bindings(lab.topology, lab.addresses.pod_ips)
            }
        }


LAYERS.append(FloatingLayer())
