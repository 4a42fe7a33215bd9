"""Pod readiness, as a Service sees it: every container alive and its readinessProbe passing.

`PodHandle.ready()` costs an exec per pod; here one exec per node answers for
all the pods of that node.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from labkit.concurrency import parallel
from labkit.dataplane.readiness import parse_readiness, probe_command, readiness_script

if TYPE_CHECKING:
    from labkit.core.cluster import Cluster


def probe_ready(cluster: Cluster, nodes: Iterable[str] | None = None) -> set[str]:
    """The pods whose containers are all alive, probed with one exec per node."""

    wanted = set(nodes) if nodes is not None else set(cluster.addresses.pod_subnets)
    wanted -= cluster.stopped_nodes()  # a stopped node's pods are not ready

    def on_node(node: str) -> set[str]:
        pods = cluster.pods_on(node)
        if not pods:
            return set()
        expected = {pod: set(cluster.pod_spec(pod).containers()) for pod in pods}
        specs = {pod: cluster.topology.pods[pod] for pod in pods}
        probes = {
            pod: probe_command(pod, spec, cluster.addresses.pod_ips[pod])
            for pod, spec in specs.items()
            if spec.readiness
        }
        host_network = [pod for pod, spec in specs.items() if spec.host_network]
        output = cluster.node(node).exec(readiness_script(pods, probes, host_network)).stdout
        return parse_readiness(output, expected, probes)

    ready: set[str] = set()
    for found in parallel(on_node, sorted(wanted)):
        ready |= found
    return ready
