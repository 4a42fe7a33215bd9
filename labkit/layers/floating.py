"""The floating IP layer: each floating IP leads to its pod, wherever the pod runs.

Every change of pods re-plans every node (a move changes the owner's DNAT and
everybody's route); nodes whose script did not change are left alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from labkit.dataplane import floating as plan
from labkit.lab import LAYERS

if TYPE_CHECKING:
    from labkit.lab import Lab

STATE_KEY = "floating"


def _applied(lab: Lab) -> dict[str, str]:
    state: dict[str, str] = lab.layer_state.setdefault(STATE_KEY, {})
    return state


def push(lab: Lab, *, force: bool) -> list[str]:
    """Run the script of every node whose plan changed (all with `force`); those nodes."""
    from labkit.faults import stopped_nodes
    from labkit.lab import parallel

    wanted = plan.plan(lab.topology, lab.addresses)
    applied = _applied(lab)
    digests = {
        node: hashlib.sha256(text.encode()).hexdigest()[:16] for node, text in wanted.items()
    }
    down = stopped_nodes(lab)  # they get their part when they return
    todo = [
        node
        for node in wanted
        if node not in down and (force or applied.get(node) != digests[node])
    ]
    parallel(lambda node: lab.node(node).exec(wanted[node]), todo)
    applied.update({node: digests[node] for node in todo})
    return todo


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
                    "pod_ip": str(b.pod_ip or "") or None,
                }
                for b in plan.bindings(lab.topology, lab.addresses.pod_ips)
            }
        }


LAYERS.append(FloatingLayer())
