"""What a lab is made of, as a plain document (`labkit status --json`)."""

from __future__ import annotations

from typing import Any

from labkit.core.cluster import Cluster


def describe_cluster(cluster: Cluster) -> dict[str, Any]:
    """Networks, nodes and pods with their addresses: stable keys for scripts."""
    stopped = cluster.stopped_nodes()
    return {
        "name": cluster.name,
        "source": cluster.source,
        "backend": cluster.topology.cluster.backend,
        "networks": {k: str(v) for k, v in cluster.addresses.underlay_subnets.items()},
        "nodes": [
            {
                "name": node.name,
                "container": node.container,
                "roles": node.roles,
                "ips": {k: str(v) for k, v in node.ips.items()},
                "ip": str(node.ip),
                "pod_subnet": str(cluster.addresses.pod_subnets.get(node.name, "")) or None,
                "stopped": node.name in stopped,
            }
            for node in cluster.nodes()
        ],
        "pods": [
            {
                "name": pod.name,
                "node": pod.node.name,
                "namespace": pod.namespace,
                "ip": str(pod.ip),
                "labels": pod.labels,
            }
            for pod in map(cluster.pod, cluster.topology.pods)  # the addons' (kube-dns) too
        ],
    }
