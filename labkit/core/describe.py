"""What a lab is made of, as a plain document (`labkit status --json`)."""

from __future__ import annotations

from typing import Any

from labkit.core.cluster import Cluster
from labkit.core.handles import PodHandle


def describe_cluster(cluster: Cluster) -> dict[str, Any]:
    """Networks, nodes and pods with their addresses: stable keys for scripts."""
    stopped = cluster.stopped_nodes()
    return {
        "name": cluster.name,
        "source": cluster.source,
        "backend": cluster.topology.cluster.backend,
        "cni_plugin": cluster.topology.cluster.cni_plugin,
        "networks": {k: str(v) for k, v in cluster.addresses.underlay_subnets.items()},
        "nodes": [
            {
                "name": node.name,
                "container": node.container,
                "roles": node.roles,
                "labels": dict(cluster.topology.nodes[node.name].labels),
                "ips": {k: str(v) for k, v in node.ips.items()},
                "ip": str(node.ip),
                "pod_subnet": str(cluster.addresses.pod_subnets.get(node.name, "")) or None,
                "stopped": node.name in stopped,
            }
            for node in cluster.nodes()
        ],
        "pods": [_pod(cluster.pod(pod)) for pod in cluster.topology.pods],  # the addons' too
    }


def _pod(pod: PodHandle) -> dict[str, Any]:
    found: dict[str, Any] = {
        "name": pod.name,
        "node": pod.node.name,
        "namespace": pod.namespace,
        "ip": str(pod.ip),
        "labels": pod.labels,
    }
    # A manifest's pod says where it came from (and when it shares its node's namespace).
    if pod.spec.origin is not None:
        found["origin"] = pod.spec.origin.model_dump()
    if pod.spec.host_network:
        found["host_network"] = True
    return found
