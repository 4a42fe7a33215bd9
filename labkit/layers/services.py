"""The Service layer: ClusterIPs and NodePorts in front of the ready pods a
selector picks, programmed kube-proxy style on every cluster node (the cluster
DNS is layers/cluster_dns.py). The Python API is `services_api.Services`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from labkit.core.cluster import Cluster
from labkit.dataplane import dns, kube_dns
from labkit.dataplane import kubeproxy_iptables as ipt
from labkit.dataplane.conntrack_cleanup import cleanup_commands
from labkit.dataplane.kubeproxy import ProxyPlan, plan_to_json
from labkit.dataplane.script import sysctl_lines
from labkit.dataplane.vxlan import underlay_device
from labkit.layers.base import BaseLayer
from labkit.layers.proxy_program import SyncReport, build_script, built_report, program
from labkit.layers.readiness import probe_ready, readiness_part, ready_in
from labkit.layers.service_state import (
    build_ready,
    current_plans,
    last_sync,
    layer_state,
    lb_ips,
    node_ports,
    proxy_mode,
    ready_pods,
    stored_plans,
    terminating_pods,
    vips,
)
from labkit.runtime import features
from labkit.topology.services_alloc import (
    ServiceEndpoint,
    dns_vip,
    node_port_key,
    selects,
    service_endpoints,
)

LAYER_NAME = "services"


def wanted(cluster: Cluster) -> bool:
    """Services to program (or IPVS's dummy device to keep)."""
    return bool(cluster.topology.services) or cluster.topology.cluster.proxy_mode == "ipvs"


def _dns_enabled(cluster: Cluster) -> bool:
    return kube_dns.present(cluster.topology)


def _route_lines(cluster: Cluster, node: str) -> list[str]:
    """A route for the service CIDR: nodes have no default route (internal networks),
    and a node's own connections to a VIP need one before OUTPUT's DNAT."""
    ip = cluster.addresses.node_ip(node)
    return [
        f"dev={underlay_device(ip)}",
        f'ip route replace {cluster.topology.cluster.service_cidr} dev "$dev" src {ip}',
    ]


# labkit before kube-proxy's table name wrote this one; a lab from then has it still.
_OLD_NFT_TABLE = "nft delete table ip labkit-proxy 2>/dev/null || true"


def _node_setup(cluster: Cluster, plan: ProxyPlan) -> list[str]:
    """What the mode needs on the node besides its rules: sysctls (iptables: 127.0.0.1
    node ports as `cluster.localhost_node_ports` says)."""
    if proxy_mode(cluster).name != "iptables":
        return []
    return sysctl_lines(ipt.node_sysctls(plan))


def _members(cluster: Cluster) -> list[str]:
    """Cluster nodes that are running: a stopped node gets everything when it returns."""

    down = cluster.stopped_nodes()
    return [node for node in cluster.addresses.pod_subnets if node not in down]


def _record(
    cluster: Cluster,
    plans: dict[str, ProxyPlan],
    ready: set[str],
    report: SyncReport,
    reason: str,
    seconds: float,
) -> None:
    """Remember what the nodes hold; the latency counts from the moment the change was seen."""
    state = layer_state(cluster)
    state["ready"] = sorted(ready)
    state.pop("plan", None)  # the one plan of labkit before per-node plans
    state["plans"] = {**state.get("plans", {}), **{n: plan_to_json(p) for n, p in plans.items()}}
    state["stale"] = {**state.get("stale", {}), **report.stale}
    state["digests"] = {**state.get("digests", {}), **report.digests}
    state["mode"] = proxy_mode(cluster).name
    state["last_sync"] = {
        "reason": reason,
        **report.summary(),
        "seconds": round(seconds, 4),  # readiness probe + plan + write
        "write_seconds": round(report.seconds, 4),
    }


def _setup(cluster: Cluster, node: str, plan: ProxyPlan) -> list[str]:
    return [*_route_lines(cluster, node), *_node_setup(cluster, plan)]


def build_parts(cluster: Cluster) -> dict[str, str]:
    """Each member's full sync, then the readiness of its pods, in its script at up."""
    members = _members(cluster)
    plans = current_plans(cluster, build_ready(cluster), members)
    mode = proxy_mode(cluster)
    return {
        node: build_script(mode, plans[node], _setup(cluster, node, plans[node]))
        + readiness_part(cluster, node)
        for node in members
    }


def apply_services(cluster: Cluster) -> SyncReport:
    """A fresh cluster: routes, then a full sync everywhere (taken from the node
    scripts at up, which wrote it assuming every pod ready: a pod found otherwise
    there is synced again now)."""
    started = time.perf_counter()
    members = _members(cluster)
    built = cluster.built_parts(LAYER_NAME, members)
    if built is not None:
        assumed = build_ready(cluster)
        report = built_report(built)
        plans = current_plans(cluster, assumed, members)
        _record(cluster, plans, assumed, report, "lab up", report.seconds)
        ready = set().union(*(ready_in(cluster, node, out) for node, out in built.items()))
        if ready == assumed:
            return report
        return sync(cluster, sorted(assumed ^ ready), reason="lab up: pods not ready")
    ready = probe_ready(cluster)
    plans = current_plans(cluster, ready, members)
    setup = {node: _setup(cluster, node, plans[node]) for node in members}
    report = program(
        cluster, members, proxy_mode(cluster), None, plans, {}, before=setup, fresh=True
    )
    _record(cluster, plans, ready, report, "lab up", time.perf_counter() - started)
    return report


def sync(
    cluster: Cluster,
    changed_pods: Sequence[str] = (),
    *,
    reason: str = "",
    also: Sequence[str] = (),
) -> SyncReport:
    """Re-read readiness where pods changed, re-program every node (partial where it can).

    With no changed pods it still checks every node's rules against what labkit
    wrote last, and rewrites a node whose rules were changed by hand. `also`:
    lines every node runs first, in the same exec.
    """
    started = time.perf_counter()
    state = layer_state(cluster)
    topology = cluster.topology
    olds = stored_plans(cluster)
    upgrade = "plans" not in state  # a lab from labkit before per-node plans
    changed = [p for p in changed_pods if p in topology.pods]
    probe_nodes = {topology.pods[p].node for p in changed}
    ready = {
        p
        for p in ready_pods(cluster)
        if p in topology.pods and topology.pods[p].node not in probe_nodes
    }
    ready |= probe_ready(cluster, probe_nodes)
    members = _members(cluster)
    plans = current_plans(cluster, ready, members)
    before = {
        node: [
            *([_OLD_NFT_TABLE, *_node_setup(cluster, plans[node])] if upgrade else []),
            *also,
        ]
        for node in members
    }
    conntrack = {
        node: cleanup_commands(olds[node], plans[node]) for node in members if node in olds
    }
    report = program(
        cluster, members, proxy_mode(cluster), olds, plans, state.get("digests", {}),
        conntrack=conntrack, before=before, stale=state.get("stale", {}),
    )  # fmt: skip
    why = reason or (f"pods changed: {', '.join(changed_pods)}" if changed_pods else "check")
    _record(cluster, plans, ready, report, why, time.perf_counter() - started)
    return report


def resync(cluster: Cluster) -> SyncReport:
    """Forget what the nodes were programmed with and write everything again."""
    state = layer_state(cluster)
    state.pop("digests", None)
    state.pop("ready", None)
    return sync(cluster, reason="full resync")


def _features(cluster: Cluster) -> list[tuple[str, str]]:
    mode = cluster.topology.cluster.proxy_mode
    needed = [("conntrack", "the service proxy")]
    if cluster.topology.cluster.bridged_pods:
        needed.append(("br_netfilter", "services with endpoints on the caller's bridge"))
    if mode == "ipvs":
        # First: on a host without IPVS that is the reason given.
        return [
            ("ipvs", "proxy mode ipvs"),
            ("dummy", "proxy mode ipvs (the VIPs' device kube-ipvs0)"),
            *needed,
            ("iptables", "proxy mode ipvs (masquerade)"),
        ]
    if mode == "nftables":
        return [("nftables", "proxy mode nftables"), *needed]
    needed += [
        ("iptables", "proxy mode iptables"),
        ("statistic", "proxy mode iptables (load balancing)"),
    ]
    if any(s.session_affinity == "ClientIP" for s in cluster.topology.services.values()):
        needed.append(("recent", "ClientIP session affinity in proxy mode iptables"))
    return needed


def _notes(cluster: Cluster, name: str, found: list[ServiceEndpoint]) -> list[str]:
    service = cluster.topology.services[name]
    if found:
        return []
    selector = ",".join(f"{k}={v}" for k, v in service.selector.items()) or "(empty)"
    picked = [p for p, pod in cluster.topology.pods.items() if selects(service, pod)]
    if not picked:
        return [f"selector {selector} matches no pod: connections are refused"]
    return [f"no ready endpoint (pods {', '.join(picked)} not ready or lack the target port)"]


def describe(cluster: Cluster) -> dict[str, Any]:
    """What `labkit status` shows: each service, its endpoints, and the proxy's last sync."""
    addresses, ports, balancers = vips(cluster), node_ports(cluster), lb_ips(cluster)
    ready, leaving = ready_pods(cluster), terminating_pods(cluster)
    services = []
    for name, service in cluster.topology.services.items():
        found = service_endpoints(
            service, cluster.topology.pods, cluster.addresses.pod_ips, ready, leaving & ready
        )
        services.append(
            {
                "name": name,
                "namespace": service.namespace,
                "type": service.type,
                "vip": str(addresses[name]) if name in addresses else None,
                "load_balancer_ip": str(balancers[name]) if name in balancers else None,
                "external_ips": [str(ip) for ip in service.external_ips],
                "external_traffic_policy": service.external_traffic_policy,
                "internal_traffic_policy": service.internal_traffic_policy,
                "dns": dns.service_name(name, service.namespace),
                "session_affinity": service.session_affinity,
                "ports": [
                    {
                        "name": port.name,
                        "protocol": port.protocol,
                        "port": port.port,
                        "target_port": port.target_port
                        if port.target_port is not None
                        else port.port,
                        "node_port": ports.get(node_port_key(name, port)),
                    }
                    for port in service.ports
                ],
                "endpoints": [
                    {
                        "pod": e.pod,
                        "ip": str(e.ip),
                        "node": e.node,
                        "ports": e.ports,
                        "terminating": e.terminating,
                    }
                    for e in found
                ],
                "notes": _notes(cluster, name, found),
            }
        )
    mode = proxy_mode(cluster)
    proxy: dict[str, Any] = {
        "mode": mode.name + (f" ({mode.backend} backend)" if mode.name == "iptables" else ""),
        "dns": str(dns_vip(cluster.topology.cluster)) if _dns_enabled(cluster) else None,
        "last_sync": last_sync(cluster),
    }
    return {"services": services, "service_proxy": proxy}


class ServicesLayer(BaseLayer):
    name = LAYER_NAME

    def wanted(self, cluster: Cluster) -> bool:
        return wanted(cluster)

    def check(self, cluster: Cluster) -> None:
        for feature, what in _features(cluster):
            features.require(feature, what)

    def build_parts(self, cluster: Cluster) -> dict[str, str]:
        return build_parts(cluster)

    def apply(self, cluster: Cluster) -> None:
        apply_services(cluster)

    def sync(self, cluster: Cluster, changed_pods: Sequence[str]) -> None:
        sync(cluster, changed_pods)

    def describe(self, cluster: Cluster) -> dict[str, Any]:
        return describe(cluster)
