"""kube-proxy's health check node ports: on every node, a small HTTP server answers
each LoadBalancer (externalTrafficPolicy Local) service's health check node port
with 200 or 503 and the count of the node's local ready endpoints.

What each port answers comes from the node's proxy plan (`dataplane.healthcheck`);
the server re-reads it, so a sync only rewrites the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from labkit.concurrency import parallel
from labkit.core.cluster import Cluster
from labkit.dataplane import healthcheck
from labkit.dataplane.agents import source
from labkit.layers.base import BaseLayer
from labkit.layers.service_state import stored_plans

STATE_KEY = "health_check"


def _members(cluster: Cluster) -> list[str]:
    down = cluster.stopped_nodes()
    return [node for node in cluster.addresses.pod_subnets if node not in down]


def apply_health(cluster: Cluster, *, fresh: bool) -> None:
    """Write each node's answers where they changed; `fresh`: the server too, and start it."""
    state = cluster.slice(STATE_KEY)
    known: dict[str, str] = {} if fresh else dict(state.get("configs", {}))
    plans = stored_plans(cluster)
    configs = {n: healthcheck.server_config(plans[n]) for n in _members(cluster) if n in plans}
    changed = [n for n, text in configs.items() if known.get(n) != text]
    program = source("health_server")

    def deploy(node: str) -> None:
        container = cluster.container(node)
        cluster.runtime.put_file(container, healthcheck.SERVER_CONFIG, configs[node])
        if fresh:
            cluster.runtime.put_file(container, healthcheck.SERVER_PROGRAM, program, 0o755)
            cluster.node(node).exec(healthcheck.server_start())

    parallel(deploy, changed)
    state["configs"] = {**known, **configs}


class HealthCheckLayer(BaseLayer):
    name = "health_check"

    def wanted(self, cluster: Cluster) -> bool:
        return any(s.needs_health_check_node_port for s in cluster.topology.services.values())

    def apply(self, cluster: Cluster) -> None:
        apply_health(cluster, fresh=True)

    def sync(self, cluster: Cluster, changed_pods: Sequence[str]) -> None:
        apply_health(cluster, fresh=False)

    def services_changed(self, cluster: Cluster) -> None:
        # Started on first need: the first Service that wants it may come after `up`.
        apply_health(cluster, fresh="configs" not in cluster.slice(STATE_KEY))

    def describe(self, cluster: Cluster) -> dict[str, Any]:
        plans = stored_plans(cluster)
        return {
            "health_check_node_ports": {
                node: {str(p): r.status for p, r in healthcheck.health_responses(plan).items()}
                for node, plan in sorted(plans.items())
            }
        }
