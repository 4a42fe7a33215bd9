"""Pod readiness, as a Service sees it: every container alive and its readinessProbe passing.

`PodHandle.ready()` costs an exec per pod; here one exec per node answers for
all the pods of that node (at up, the node's own script does: `readiness_part`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from labkit.concurrency import parallel
from labkit.dataplane.readiness import parse_readiness, probe_command, readiness_script

if TYPE_CHECKING:
    from labkit.core.cluster import Cluster


MARK = "labkit-readiness"  # where a node script's readiness part begins


def readiness_part(cluster: Cluster, node: str) -> str:
    """The script that probes the node's pods, its output after a MARK line; "" without
    pods. It never fails: appended to a node's script at up, its answer spares the
    first Service sync a probe round."""
    pods = cluster.pods_on(node)
    if not pods:
        return ""
    specs = {pod: cluster.topology.pods[pod] for pod in pods}
    probes = {
        pod: probe_command(pod, spec, cluster.addresses.pod_ips[pod])
        for pod, spec in specs.items()
        if spec.readiness
    }
    host_network = [pod for pod, spec in specs.items() if spec.host_network]
    return f"echo {MARK}\n( {readiness_script(pods, probes, host_network)}) || true\n"


def ready_in(cluster: Cluster, node: str, output: str) -> set[str]:
    """The node's ready pods, from the output of a script that ends with its readiness part."""
    _, found, answer = output.rpartition(MARK + "\n")
    if not found:
        return set()
    pods = cluster.pods_on(node)
    expected = {pod: set(cluster.pod_spec(pod).containers()) for pod in pods}
    probed = [pod for pod in pods if cluster.topology.pods[pod].readiness]
    return parse_readiness(answer, expected, probed)


def probe_ready(cluster: Cluster, nodes: Iterable[str] | None = None) -> set[str]:
    """The pods whose containers are all alive, probed with one exec per node."""

    wanted = set(nodes) if nodes is not None else set(cluster.addresses.pod_subnets)
    wanted -= cluster.stopped_nodes()  # a stopped node's pods are not ready

    def on_node(node: str) -> set[str]:
        part = readiness_part(cluster, node)
        return ready_in(cluster, node, cluster.node(node).exec(part).stdout) if part else set()

    ready: set[str] = set()
    for found in parallel(on_node, sorted(wanted)):
        ready |= found
    return ready
