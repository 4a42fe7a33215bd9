"""Pod lifecycle on a running lab: add, delete, move, relabel. One place, with rollback.

Addresses: a pinned IP is kept; a pod that comes back under its old name gets
its old IP (sticky); otherwise the lowest free IP of its node's subnet that no
deleted pod may come back for. Moves are break before make, as a Kubernetes
pod is rescheduled: the pod leaves its node, comes up on the new node with an
address of that node's subnet, then every layer follows (`pods_changed`).
A pinned IP cannot follow a move (it is in the old node's subnet); the old IP
stays reserved for the pod, should it come back. A pod can leave a stopped node
(rescheduled off a failed node): the node does not run it again when it returns.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from labkit.core.cluster import Cluster
from labkit.core.handles import PodHandle
from labkit.dataplane import pods as pod_plan
from labkit.errors import UsageError
from labkit.topology.addressing import choose_pod_ip as plan_pod_ip
from labkit.topology.model import Pod
from labkit.topology.placement import least_loaded

RELEASED_KEY = "released_ips"


def _released(cluster: Cluster) -> dict[str, str]:
    released: dict[str, str] = cluster.state.setdefault(RELEASED_KEY, {})
    return released


def choose_pod_ip(
    cluster: Cluster, name: str, node: str, pinned: IPv4Address | None = None
) -> IPv4Address:
    """The IP for pod `name` on `node`: pinned; else its own from before (sticky);
    else the lowest free one that no deleted pod may come back for."""
    released = _released(cluster)
    others = [ip for pod_name, ip in released.items() if pod_name != name]
    used = [ip for pod_name, ip in cluster.addresses.pod_ips.items() if pod_name != name]
    return plan_pod_ip(
        cluster.addresses.pod_subnets[node],
        used,
        pinned=pinned,
        sticky=released.get(name),
        reserved=others,
    )


def add_pod(
    cluster: Cluster, name: str, pod: Pod | dict[str, Any], *, notify: bool = True
) -> PodHandle:
    """Create a pod on a running lab; services and the rest follow (unless not `notify`:
    the caller tells `pods_changed` once for many). A pod that names no node goes to
    the least loaded running pod node, as the topology file places it."""
    if isinstance(pod, dict) and pod.get("node") is None:
        pod = {**pod, "node": least_loaded_node(cluster)}
    spec = pod if isinstance(pod, Pod) else Pod.model_validate(pod)
    addresses = cluster.addresses
    if name in cluster.topology.pods:
        raise UsageError(f"pod {name!r} exists already")
    if spec.node not in addresses.pod_subnets:
        raise UsageError(
            f"node {spec.node!r} runs no pods (pod nodes: {', '.join(addresses.pod_subnets)})"
        )
    subnet = addresses.pod_subnets[spec.node]
    if spec.ip is not None and (spec.ip not in subnet or spec.ip in addresses.pod_ips.values()):
        raise UsageError(f"pod IP {spec.ip} is outside {subnet} of node {spec.node} or taken")
    ip = (
        addresses.node_ip(spec.node)
        if spec.host_network
        else choose_pod_ip(cluster, name, spec.node, spec.ip)
    )
    cluster.topology.pods[name] = spec
    addresses.pod_ips[name] = ip
    try:
        cluster.node(spec.node).exec(pod_plan.pod_add_script(cluster.pod_spec(name)))
    except BaseException:
        cluster.node(spec.node).exec(pod_plan.pod_delete_script(name), check=False)
        del cluster.topology.pods[name], addresses.pod_ips[name]
        raise
    released = _released(cluster)
    if released.get(name) == str(ip):
        del released[name]
    if notify:
        cluster.pods_changed([name])
    return cluster.pod(name)


def least_loaded_node(cluster: Cluster) -> str:
    """The running pod node with the fewest pods (the first in file order among equals)."""
    stopped = cluster.stopped_nodes()
    running = [node for node in cluster.addresses.pod_subnets if node not in stopped]
    if not running:
        raise UsageError(f"no running node of lab {cluster.name} runs pods")
    load: dict[str, int] = {}
    for spec in cluster.topology.pods.values():
        load[spec.node] = load.get(spec.node, 0) + 1
    return least_loaded(running, load)


def delete_pod(cluster: Cluster, name: str, *, notify: bool = True) -> None:
    handle = cluster.pod(name)  # NS/NAME or a bare name -> the key
    name, node = handle.name, handle.node
    spec = cluster.topology.pods.pop(name)
    node.exec(pod_plan.pod_delete_script(name))
    # Sticky addresses: the next pod of that name on that node gets it back.
    ip = cluster.addresses.pod_ips.pop(name)
    if not spec.host_network:
        _released(cluster)[name] = str(ip)
    if notify:
        cluster.pods_changed([name])


def set_labels(cluster: Cluster, name: str, labels: dict[str, str], *, notify: bool = True) -> None:
    name = cluster.pod(name).name
    cluster.topology.pods[name].labels = dict(labels)
    if notify:
        cluster.pods_changed([name])


def check_move(cluster: Cluster, name: str, node: str) -> None:
    """Raise UsageError (exit code 2) before anything changes."""
    cluster.pod(name)
    if node not in cluster.topology.nodes:
        raise UsageError(
            f"cannot move pod {name!r}: no node {node!r} in lab {cluster.name} "
            f"(nodes: {', '.join(cluster.topology.nodes)})"
        )
    if node not in cluster.addresses.pod_subnets:
        raise UsageError(
            f"cannot move pod {name!r}: node {node!r} runs no pods "
            f"(pod nodes: {', '.join(cluster.addresses.pod_subnets)})"
        )
    if cluster.topology.pods[name].node == node:
        raise UsageError(f"pod {name!r} runs on {node!r} already")
    if node in cluster.stopped_nodes():
        raise UsageError(f"cannot move pod {name!r}: node {node!r} is stopped (labkit fault start)")


def move_pod(cluster: Cluster, name: str, node: str) -> PodHandle:
    """Recreate a pod on another node with a new pod IP; every layer follows."""
    name = cluster.pod(name).name
    check_move(cluster, name, node)
    old_spec = cluster.topology.pods[name]
    old_ip = cluster.addresses.pod_ips[name]
    old_node_up = old_spec.node not in cluster.stopped_nodes()  # a stopped node lost it already
    if old_node_up:
        cluster.node(old_spec.node).exec(pod_plan.pod_delete_script(name))
    new_ip = choose_pod_ip(cluster, name, node)
    cluster.topology.pods[name] = old_spec.model_copy(update={"node": node, "ip": None})
    cluster.addresses.pod_ips[name] = new_ip
    try:
        cluster.node(node).exec(pod_plan.pod_add_script(cluster.pod_spec(name)))
    except BaseException:
        # Put it back where it was, then report why the move failed.
        cluster.node(node).exec(pod_plan.pod_delete_script(name), check=False)
        cluster.topology.pods[name], cluster.addresses.pod_ips[name] = old_spec, old_ip
        if old_node_up:
            cluster.node(old_spec.node).exec(
                pod_plan.pod_add_script(cluster.pod_spec(name)), check=False
            )
        cluster.save()
        raise
    _released(cluster)[name] = str(old_ip)  # it gets it back if it ever returns to that node
    cluster.pods_changed([name])
    return cluster.pod(name)
