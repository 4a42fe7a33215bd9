"""The ingress layer: a proxy on each edge node rendered from the rules and the
current endpoints (VRRP in front of them is layers/vrrp.py).

A render goes to the node as a candidate file, is checked there by the
proxy's own checker (`nginx -t`, `haproxy -c`) and only then replaces the
running configuration, with a graceful reload. A refused render changes
nothing on the node: the old configuration keeps serving and the checker's
message is raised (`IngressConfigError`) and kept for `labkit status`.

The Python API is `IngressControl` (`lab.ingress`); VRRP is layers/vrrp.py.

`apply` is also safe on a running cluster (a reload or a start per node): the
faults API runs it again after a node comes back.

State in `cluster.state["ingress"]`: the hash of the configuration each
edge node serves, and the last refused render's error per node.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from labkit.concurrency import parallel
from labkit.core.cluster import Cluster
from labkit.dataplane import ingress_haproxy, ingress_nginx, ingress_tls
from labkit.dataplane.deploy import CHECK_FAILED, checked_deploy_script, start_or_reload
from labkit.dataplane.ingress_l4 import L4Entry
from labkit.dataplane.ingress_routes import (
    Controller,
    RoutingTable,
    Servers,
    UpstreamServer,
    port_key,
    routing_table,
)
from labkit.errors import LabkitError, UsageError
from labkit.layers.base import BaseLayer
from labkit.layers.service_state import endpoints, service_vip
from labkit.topology.l4_entries import l4_targets
from labkit.topology.model import Ingress

STATE_KEY = "ingress"
CONTROLLERS = {"nginx": ingress_nginx.CONTROLLER, "haproxy": ingress_haproxy.CONTROLLER}


class IngressConfigError(LabkitError):
    """The proxy's own checker refused a render; the previous configuration still serves."""


def _state(cluster: Cluster) -> dict[str, Any]:
    return cluster.state.setdefault(STATE_KEY, {})


def _ingress(cluster: Cluster) -> Ingress:
    if cluster.topology.ingress is None:
        raise UsageError(f"lab {cluster.name} has no ingress")
    return cluster.topology.ingress


def controller(cluster: Cluster) -> Controller:
    return CONTROLLERS[_ingress(cluster).controller]


# -- the proxy's configuration ----------------------------------------------------


def upstream_servers(cluster: Cluster) -> dict[tuple[str, str], list[UpstreamServer]]:
    """Per (service, port key), where the proxy sends: pod IPs or the Service VIP."""
    ingress = _ingress(cluster)
    wanted = {rule.service for rule in ingress.rules} | {t.service for t in l4_targets(ingress)}
    wanted &= set(cluster.topology.services)
    if ingress.default_backend is not None:
        wanted.add(ingress.default_backend.service)
    servers: dict[tuple[str, str], list[UpstreamServer]] = {}
    for service in sorted(wanted):
        if ingress.upstream == "service":
            vip = service_vip(cluster, service)
            for port in cluster.topology.services[service].ports:
                key = port.name or str(port.port)
                servers[(service, key)] = [UpstreamServer(vip, port.port)]
            continue
        for endpoint in endpoints(cluster, service):
            for key, target in endpoint.ports.items():
                servers.setdefault((service, key), []).append(UpstreamServer(endpoint.ip, target))
    return servers


def l4_entries(cluster: Cluster, servers: Servers | None = None) -> list[L4Entry]:
    """The declared TCP/UDP ports with the servers they forward to now."""
    services = cluster.topology.services
    servers = upstream_servers(cluster) if servers is None else servers
    entries = []
    for target in l4_targets(_ingress(cluster)):
        if target.service not in services:
            continue  # refused by the checks; never rendered
        wanted = int(target.service_port) if target.service_port.isdigit() else target.service_port
        key = port_key(services[target.service], wanted)
        entries.append(L4Entry(target, tuple(sorted(set(servers.get((target.service, key), ()))))))
    return entries


def current_table(cluster: Cluster) -> RoutingTable:
    ingress, servers = _ingress(cluster), upstream_servers(cluster)
    table = routing_table(ingress, cluster.topology.services, servers)
    return replace(table, l4=tuple(l4_entries(cluster, servers)))


def render(cluster: Cluster) -> str:
    return controller(cluster).render(current_table(cluster))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def deploy(cluster: Cluster, node: str, text: str) -> None:
    """Put `text` in place as the proxy's configuration on `node`, if its checker accepts it.

    Raises `IngressConfigError` with the checker's message when it refuses;
    then nothing changed on the node.
    """
    proxy, ingress = controller(cluster), _ingress(cluster)
    files = ingress_tls.files_script(ingress_tls.certificates(ingress)) if ingress.tls else ""
    script = checked_deploy_script(
        text, proxy.config_path, proxy.check, proxy.running, proxy.reload, proxy.start, files
    )
    result = cluster.node(node).exec(script, check=False, timeout=30)
    state = _state(cluster)
    if result.exit_code == CHECK_FAILED:
        message = result.output.strip()
        state.setdefault("errors", {})[node] = message
        raise IngressConfigError(
            f"{proxy.name} on {node} refused the new configuration; the previous one keeps "
            f"serving:\n{message}"
        )
    if not result.ok:
        raise LabkitError(
            f"{proxy.name} on {node}: deploying the configuration failed:\n{result.output}"
        )
    state.setdefault("deployed", {})[node] = _digest(text)
    state.get("errors", {}).pop(node, None)


def deploy_all(cluster: Cluster, *, force: bool = False) -> list[str]:
    """Render once and deploy on every running edge node whose configuration differs.

    A stopped node is left out; it gets the current render when it comes back
    (`apply` runs again then). Returns the nodes deployed to.
    """
    text = render(cluster)
    deployed = _state(cluster).get("deployed", {})
    nodes = [
        node
        for node in _ingress(cluster).nodes
        if (force or deployed.get(node) != _digest(text))
        and cluster.runtime.is_running(cluster.node(node).container)
    ]
    failures: list[str] = []

    def one(node: str) -> None:
        try:
            deploy(cluster, node, text)
        except IngressConfigError as exc:
            failures.append(str(exc))

    parallel(one, nodes)
    if failures:
        raise IngressConfigError("\n".join(failures))
    return nodes


def start_proxy(cluster: Cluster, node: str) -> None:
    """Start the proxy with the configuration in place (after a crash or a node restart)."""
    proxy = controller(cluster)
    cluster.node(node).exec(start_or_reload(proxy.running, None, proxy.start), timeout=30)


def stop_proxy(cluster: Cluster, node: str) -> None:
    """Kill every process of the proxy on `node` at once: what a crash looks like."""
    cluster.node(node).exec(f"pkill -KILL -x {controller(cluster).name} || true", timeout=10)


def proxy_running(cluster: Cluster, node: str) -> bool:
    return cluster.node(node).exec(controller(cluster).running, check=False).ok


def set_upstream(cluster: Cluster, mode: str) -> None:
    """Switch the upstream mode (`endpoints` | `service`) of a running cluster."""
    ingress = _ingress(cluster)
    cluster.topology.ingress = Ingress.model_validate({**ingress.model_dump(), "upstream": mode})
    deploy_all(cluster)
    cluster.save()


# -- the layer and its API ------------------------------------------------------------


class IngressLayer(BaseLayer):
    name = "ingress"

    def wanted(self, cluster: Cluster) -> bool:
        return cluster.topology.ingress is not None

    def apply(self, cluster: Cluster) -> None:
        deploy_all(cluster, force=True)

    def sync(self, cluster: Cluster, changed_pods: Sequence[str]) -> None:
        if changed_pods:
            deploy_all(cluster)

    def describe(self, cluster: Cluster) -> dict[str, Any]:
        ingress = _ingress(cluster)
        document = {
            "controller": ingress.controller,
            "upstream": ingress.upstream,
            "nodes": list(ingress.nodes),
            "port": ingress.port,
            "tls_port": ingress.tls_port if ingress.tls else None,
            "config": controller(cluster).config_path,
            "refused": dict(_state(cluster).get("errors", {})),
            "l4": {
                f"{t.port}/{t.protocol}": f"{t.service}:{t.service_port}"
                for t in l4_targets(ingress)
            },
        }
        if cluster.topology.vrrp is not None:
            document["url"] = f"http://{cluster.topology.vrrp.vip}:{ingress.port}/"
        return {"ingress": document}


class IngressControl:
    """The ingress of a running lab (`lab.ingress`)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    @property
    def controller(self) -> Controller:
        return controller(self.cluster)

    def render(self) -> str:
        return render(self.cluster)

    def deploy(self, node: str, text: str) -> None:
        deploy(self.cluster, node, text)

    def deploy_all(self, *, force: bool = False) -> list[str]:
        return deploy_all(self.cluster, force=force)

    def refused(self) -> dict[str, str]:
        """The checker's message per edge node whose last render it refused."""
        return dict(_state(self.cluster).get("errors", {}))

    def start_proxy(self, node: str) -> None:
        start_proxy(self.cluster, node)

    def stop_proxy(self, node: str) -> None:
        stop_proxy(self.cluster, node)

    def proxy_running(self, node: str) -> bool:
        return proxy_running(self.cluster, node)

    def set_upstream(self, mode: str) -> None:
        set_upstream(self.cluster, mode)
