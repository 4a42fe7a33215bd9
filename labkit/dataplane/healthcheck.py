"""kube-proxy's service health check node ports (`pkg/proxy/healthcheck`), decided. Pure.

A LoadBalancer with externalTrafficPolicy Local has a health check node port
on every node; the cloud load balancer sends only to nodes answering 200.
kube-proxy answers 200 when the node has local ready endpoints (and the proxy
is healthy), 503 otherwise, with this JSON body and the endpoint count in
`X-Load-Balancing-Endpoint-Weight`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from labkit.dataplane.kubeproxy import ProxyPlan


@dataclass(frozen=True)
class HealthResponse:
    namespace: str
    service: str
    local_endpoints: int
    proxy_healthy: bool = True

    @property
    def status(self) -> int:
        return 200 if self.local_endpoints and self.proxy_healthy else 503

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "X-Content-Type-Options": "nosniff",
            "X-Load-Balancing-Endpoint-Weight": str(self.local_endpoints),
        }

    @property
    def body(self) -> str:
        document = {
            "service": {"namespace": self.namespace, "name": self.service},
            "localEndpoints": self.local_endpoints,
            "serviceProxyHealthy": self.proxy_healthy,
        }
        return json.dumps(document, indent="\t")


def health_responses(plan: ProxyPlan, proxy_healthy: bool = True) -> dict[int, HealthResponse]:
    """What each health check node port answers on `plan.node`: local ready endpoints
    of the service (over all its ports, counted once each)."""
    local: dict[tuple[str, str], set[str]] = {}
    ports: dict[int, tuple[str, str]] = {}
    for service in plan.services:
        if service.health_check_node_port is None:
            continue
        key = (service.namespace, service.service)
        ports[service.health_check_node_port] = key
        local.setdefault(key, set()).update(
            str(e.ip) for e in service.endpoints if e.ready and plan.node and e.node == plan.node
        )
    return {
        port: HealthResponse(ns, name, len(local[(ns, name)]), proxy_healthy)
        for port, (ns, name) in sorted(ports.items())
    }


# -- the node's health server (`agents/health_server.py`) ---------------------------

SERVER_PROGRAM = "/usr/local/lib/labkit/health_server.py"
SERVER_CONFIG = "/etc/labkit/health.json"
SERVER_PID = "/run/labkit/health-server.pid"


def server_config(plan: ProxyPlan, proxy_healthy: bool = True) -> str:
    """What the node's health server answers on each port, as JSON."""
    document = {
        str(port): {"status": r.status, "headers": r.headers, "body": r.body}
        for port, r in health_responses(plan, proxy_healthy).items()
    }
    return json.dumps(document, indent=1, sort_keys=True)


def server_start() -> str:
    """Start the health server unless it runs (it re-reads its configuration by itself)."""
    # By its command line: the pid file outlives a node restart, its number may be reused.
    running = f"[ -f {SERVER_PID} ] && grep -qs {SERVER_PROGRAM} /proc/$(cat {SERVER_PID})/cmdline"
    start = (
        f"nohup python3 {SERVER_PROGRAM} {SERVER_CONFIG} > /var/log/labkit/health-server.log "
        f"2>&1 < /dev/null & echo $! > {SERVER_PID}"
    )
    return f"mkdir -p /run/labkit /var/log/labkit\nif ! {{ {running}; }}; then\n  {start}\nfi"
