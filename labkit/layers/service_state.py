"""The Service layer's state: VIPs and node ports handed out (sticky), the ready
pods seen at the last sync, and the lookups every other part of the layer uses.

Kept in `cluster.state["services"]`: vips, node_ports, lb_ips, ready, the plan
each node was last programmed with (`plans`, for partial syncs), the chains each
node's last sync left flushed (`stale`, nftables), digests and the last sync's timing.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address
from typing import Any

from labkit.core.cluster import Cluster
from labkit.dataplane.kubeproxy import ProxyPlan, build_plan, plan_from_json
from labkit.dataplane.proxy_modes import Mode, mode_of
from labkit.errors import UsageError
from labkit.layers.readiness import probe_ready
from labkit.topology.lb_pool import allocate_lb_ips
from labkit.topology.model import Service
from labkit.topology.services_alloc import (
    ServiceEndpoint,
    allocate_node_ports,
    allocate_vips,
    service_endpoints,
)

STATE_KEY = "services"


def layer_state(cluster: Cluster) -> dict[str, Any]:
    return cluster.state.setdefault(STATE_KEY, {})


def vips(cluster: Cluster) -> dict[str, IPv4Address]:
    """Every service's VIP; allocated (and remembered) on first use."""
    state = layer_state(cluster)
    known = {name: IPv4Address(ip) for name, ip in state.get("vips", {}).items()}
    allocated = allocate_vips(cluster.topology, known)
    if allocated != known:
        state["vips"] = {name: str(ip) for name, ip in allocated.items()}
    return allocated


def node_ports(cluster: Cluster) -> dict[str, int]:
    """Node ports keyed `service/port-key`; allocated (and remembered) on first use."""
    state = layer_state(cluster)
    known = dict(state.get("node_ports", {}))
    allocated = allocate_node_ports(cluster.topology, known)
    if allocated != known:
        state["node_ports"] = allocated
    return allocated


def lb_ips(cluster: Cluster) -> dict[str, IPv4Address]:
    """Each LoadBalancer service's address from the pool; allocated (and remembered) on first use."""
    state = layer_state(cluster)
    known = {name: IPv4Address(ip) for name, ip in state.get("lb_ips", {}).items()}
    allocated = allocate_lb_ips(cluster.topology, known)
    if allocated != known:
        state["lb_ips"] = {name: str(ip) for name, ip in allocated.items()}
    return allocated


def ready_pods(cluster: Cluster, fresh: bool = False) -> set[str]:
    """The ready pods as of the last sync, or probed now (`fresh`, or never synced)."""
    state = layer_state(cluster)
    if fresh or "ready" not in state:
        ready = probe_ready(cluster)
        state["ready"] = sorted(ready)
        return ready
    return set(state["ready"]) & set(cluster.topology.pods)


def build_ready(cluster: Cluster) -> set[str]:
    """The pods the layers' parts of the node scripts take as ready at up: every pod
    of a cluster node, as each is at the end of its script unless a container died
    or a readiness probe fails. The first apply compares with what the scripts found."""
    return {pod for node in cluster.addresses.pod_subnets for pod in cluster.pods_on(node)}


def terminating_pods(cluster: Cluster) -> set[str]:
    """Pods marked as being deleted: still serving while alive, but not ready (their
    endpoints only take traffic when a service has no ready one: kube-proxy's fallback)."""
    return set(layer_state(cluster).get("terminating", [])) & set(cluster.topology.pods)


def service_spec(cluster: Cluster, name: str) -> Service:
    service = cluster.topology.services.get(name)
    if service is None:
        known = ", ".join(cluster.topology.services) or "none"
        raise UsageError(f"no service {name!r} in lab {cluster.name} (services: {known})")
    return service


def endpoints(cluster: Cluster, service_name: str, *, fresh: bool = False) -> list[ServiceEndpoint]:
    """The service's endpoints: the ready pods its selector picks (as last synced)."""
    service = service_spec(cluster, service_name)
    ready = ready_pods(cluster, fresh=fresh)
    return service_endpoints(
        service, cluster.topology.pods, cluster.addresses.pod_ips, ready,
        terminating_pods(cluster) & ready,
    )  # fmt: skip


def service_vip(cluster: Cluster, service_name: str) -> IPv4Address:
    service_spec(cluster, service_name)
    return vips(cluster)[service_name]


def proxy_mode(cluster: Cluster) -> Mode:
    settings = cluster.topology.cluster
    return mode_of(settings.proxy_mode, settings.iptables_backend)


def current_plans(cluster: Cluster, ready: set[str], nodes: Iterable[str]) -> dict[str, ProxyPlan]:
    """Each node's plan for the topology as it is now, with these ready pods: the
    node decides which endpoints are local; its underlay address takes node ports."""
    topology = cluster.topology
    leaving = terminating_pods(cluster) & ready
    found = {
        name: service_endpoints(service, topology.pods, cluster.addresses.pod_ips, ready, leaving)
        for name, service in topology.services.items()
    }
    addresses, ports, balancers = vips(cluster), node_ports(cluster), lb_ips(cluster)
    return {
        node: build_plan(
            topology,
            addresses,
            ports,
            found,
            lb_ips=balancers,
            node=node,
            node_ips=(cluster.addresses.node_ip(node),),
        )
        for node in nodes
    }


def stored_plans(cluster: Cluster) -> dict[str, ProxyPlan]:
    """The plan each node was last programmed with (none from labkit before per-node plans)."""
    return {
        node: plan_from_json(doc) for node, doc in layer_state(cluster).get("plans", {}).items()
    }


def last_sync(cluster: Cluster) -> dict[str, Any] | None:
    """The last sync's summary: kind, seconds until every node committed, nodes restored."""
    found = layer_state(cluster).get("last_sync")
    return dict(found) if found else None
