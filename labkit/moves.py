"""Pod migration: recreate a pod on another node with a new pod IP.

Break before make, as a Kubernetes pod is rescheduled: the pod leaves its node
(processes, namespace, IP), comes up on the new node with an address of that
node's subnet, and then every layer follows (`pods_changed`): Service
endpoints, DNS, ingress upstreams, floating IPs, policy peers.

A pinned IP cannot follow (it is in the old node's subnet): the moved pod gets
a new one. Its old IP stays reserved for it, should it come back. A pod can
leave a node stopped by a fault (rescheduled off a failed node): the node
does not run it again when it returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from labkit.dataplane import pods as pod_plan
from labkit.errors import UsageError
from labkit.faults import stopped_nodes

if TYPE_CHECKING:
    from labkit.handles import PodHandle
    from labkit.lab import Lab


def check_move(lab: Lab, name: str, node: str) -> None:
    """Raise UsageError (exit code 2) before anything changes."""
    lab.pod(name)
    if node not in lab.topology.nodes:
        raise UsageError(
            f"cannot move pod {name!r}: no node {node!r} in lab {lab.name} "
            f"(nodes: {', '.join(lab.topology.nodes)})"
        )
    if node not in lab.addresses.pod_subnets:
        raise UsageError(
            f"cannot move pod {name!r}: node {node!r} runs no pods "
            f"(pod nodes: {', '.join(lab.addresses.pod_subnets)})"
        )
    if lab.topology.pods[name].node == node:
        raise UsageError(f"pod {name!r} runs on {node!r} already")
    if node in stopped_nodes(lab):
        raise UsageError(f"cannot move pod {name!r}: node {node!r} is stopped (labkit fault start)")


def move_pod(lab: Lab, name: str, node: str) -> PodHandle:
    check_move(lab, name, node)
    old_spec = lab.topology.pods[name]
    old_ip = lab.addresses.pod_ips[name]
    released: dict[str, str] = lab.layer_state.setdefault("released_ips", {})
    if old_spec.node not in stopped_nodes(lab):  # a stopped node lost the pod already
        lab.node(old_spec.node).exec(pod_plan.pod_delete_script(name))
    new_ip = lab.choose_pod_ip(name, node)
    lab.topology.pods[name] = old_spec.model_copy(update={"node": node, "ip": None})
    lab.addresses.pod_ips[name] = new_ip
    try:
        lab.node(node).exec(pod_plan.pod_add_script(lab.pod_spec(name)))
    except BaseException:
        # Put it back where it was, then report why the move failed.
        lab.node(node).exec(pod_plan.pod_delete_script(name), check=False)
        lab.topology.pods[name], lab.addresses.pod_ips[name] = old_spec, old_ip
        if old_spec.node not in stopped_nodes(lab):
            lab.node(old_spec.node).exec(pod_plan.pod_add_script(lab.pod_spec(name)), check=False)
        lab.save()
        raise
    released[name] = str(old_ip)  # it gets it back if it ever returns to that node
    lab.pods_changed([name])
    return lab.pod(name)
