"""The Service layer: ClusterIPs and NodePorts in front of the ready pods a
selector picks, programmed kube-proxy style on every cluster node, and the
cluster DNS that names them.

What other code uses: `lab.service(name)` (a `ServiceHandle`),
`endpoints(lab, name)`, `service_vip(lab, name)`.

The layer keeps its state in `lab.layer_state["services"]`: the VIPs and node
ports handed out (sticky), the ready pods seen at the last sync, the plan the
nodes were last programmed with (for partial syncs) and the last sync's
timing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from labkit.dataplane import dns
from labkit.dataplane.kubeproxy import (
    ProxyPlan,
    build_plan,
    conntrack_flushes,
    plan_from_json,
    plan_to_json,
)
from labkit.dataplane.proxy_modes import Mode, mode_of
from labkit.errors import UsageError
from labkit.lab import LAYERS
from labkit.layers.proxy_program import SyncReport, program
from labkit.layers.readiness import probe_ready
from labkit.runtime import features
from labkit.topology.model import Service, ServicePort
from labkit.topology.services_alloc import (
    ServiceEndpoint,
    allocate_node_ports,
    allocate_vips,
    dns_vip,
    find_port,
    node_port_key,
    selects,
    service_endpoints,
)
from labkit.topology.validate import check_services

if TYPE_CHECKING:
    from labkit.lab import Lab

STATE_KEY = "services"

__all__ = ["ServiceEndpoint", "ServiceHandle", "endpoints", "service_vip"]


# -- state --------------------------------------------------------------------


def layer_state(lab: Lab) -> dict[str, Any]:
    return lab.layer_state.setdefault(STATE_KEY, {})


def vips(lab: Lab) -> dict[str, IPv4Address]:
    """Every service's VIP; allocated (and remembered) on first use."""
    state = layer_state(lab)
    known = {name: IPv4Address(ip) for name, ip in state.get("vips", {}).items()}
    allocated = allocate_vips(lab.topology, known)
    if allocated != known:
        state["vips"] = {name: str(ip) for name, ip in allocated.items()}
    return allocated


def node_ports(lab: Lab) -> dict[str, int]:
    """Node ports keyed `service/port-key`; allocated (and remembered) on first use."""
    state = layer_state(lab)
    known = dict(state.get("node_ports", {}))
    allocated = allocate_node_ports(lab.topology, known)
    if allocated != known:
        state["node_ports"] = allocated
    return allocated


def ready_pods(lab: Lab, fresh: bool = False) -> set[str]:
    """The ready pods as of the last sync, or probed now (`fresh`, or never synced)."""
    state = layer_state(lab)
    if fresh or "ready" not in state:
        ready = probe_ready(lab)
        state["ready"] = sorted(ready)
        return ready
    return set(state["ready"]) & set(lab.topology.pods)


# -- the API other code uses -----------------------------------------------------


def _service(lab: Lab, name: str) -> Any:
    service = lab.topology.services.get(name)
    if service is None:
        known = ", ".join(lab.topology.services) or "none"
        raise UsageError(f"no service {name!r} in lab {lab.name} (services: {known})")
    return service


def endpoints(lab: Lab, service_name: str, *, fresh: bool = False) -> list[ServiceEndpoint]:
    """The service's endpoints: the ready pods its selector picks (as last synced)."""
    service = _service(lab, service_name)
    return service_endpoints(
        service, lab.topology.pods, lab.addresses.pod_ips, ready_pods(lab, fresh=fresh)
    )


def service_vip(lab: Lab, service_name: str) -> IPv4Address:
    _service(lab, service_name)
    return vips(lab)[service_name]


@dataclass
class ServiceHandle:
    """A service of a running lab: its VIP, ports, node ports and endpoints."""

    lab: Lab
    name: str

    def __repr__(self) -> str:
        return f"<service {self.name} {self.vip}>"

    @property
    def spec(self) -> Any:
        return _service(self.lab, self.name)

    @property
    def vip(self) -> IPv4Address:
        return service_vip(self.lab, self.name)

    @property
    def namespace(self) -> str:
        return str(self.spec.namespace)

    @property
    def ports(self) -> list[ServicePort]:
        return list(self.spec.ports)

    def port(self, port_name_or_number: int | str) -> ServicePort:
        return find_port(self.spec, port_name_or_number)

    def node_port(self, port_name_or_number: int | str) -> int:
        key = node_port_key(self.name, self.port(port_name_or_number))
        allocated = node_ports(self.lab)
        if key not in allocated:
            raise UsageError(f"service {self.name} is of type {self.spec.type}: no node port")
        return allocated[key]

    def endpoints(self, fresh: bool = False) -> list[ServiceEndpoint]:
        return endpoints(self.lab, self.name, fresh=fresh)

    @property
    def dns_name(self) -> str:
        return dns.service_name(self.name, self.namespace)


def service_handle(lab: Lab, name: str) -> ServiceHandle:
    _service(lab, name)
    return ServiceHandle(lab, name)


# -- programming the nodes ----------------------------------------------------------


def proxy_mode(lab: Lab) -> Mode:
    cluster = lab.topology.cluster
    return mode_of(cluster.proxy_mode, cluster.iptables_backend)


def current_plan(lab: Lab, ready: set[str]) -> ProxyPlan:
    """The plan for the topology as it is now, with these ready pods."""
    topology = lab.topology
    found = {
        name: service_endpoints(service, topology.pods, lab.addresses.pod_ips, ready)
        for name, service in topology.services.items()
    }
    return build_plan(topology, vips(lab), node_ports(lab), found)


def _dns_enabled(lab: Lab) -> bool:
    return lab.topology.cluster.dns and bool(lab.topology.services)


def _hosts(lab: Lab) -> str:
    addresses = vips(lab)
    return dns.hosts_file(
        {name: (svc.namespace, addresses[name]) for name, svc in lab.topology.services.items()}
    )


def _route_lines(lab: Lab, node: str) -> list[str]:
    """A route for the service CIDR: nodes have no default route (internal networks),
    and a node's own connections to a VIP need one before OUTPUT's DNAT."""
    ip = lab.addresses.node_ip(node)
    return [
        f"dev=$(ip -o -4 addr show | awk '$4 ~ /^{ip}\\// {{print $2; exit}}')",
        f'ip route replace {lab.topology.cluster.service_cidr} dev "$dev" src {ip}',
    ]


def _resolv_lines(lab: Lab, pods: Iterable[str]) -> list[str]:
    if not _dns_enabled(lab):
        return []
    vip = dns_vip(lab.topology.cluster)
    return dns.pod_resolv_lines(vip, {p: lab.topology.pods[p].namespace for p in pods})


def _members(lab: Lab) -> list[str]:
    """Cluster nodes that are running: a stopped node gets everything when it returns."""
    from labkit.faults import stopped_nodes

    down = stopped_nodes(lab)
    return [node for node in lab.addresses.pod_subnets if node not in down]


def _record(
    lab: Lab, plan: ProxyPlan, ready: set[str], report: SyncReport, reason: str, started: float
) -> None:
    """Remember what the nodes hold; the latency counts from the moment the change was seen."""
    state = layer_state(lab)
    state["ready"] = sorted(ready)
    state["plan"] = plan_to_json(plan)
    state["digests"] = {**state.get("digests", {}), **report.digests}
    state["mode"] = proxy_mode(lab).name
    state["last_sync"] = {
        "reason": reason,
        **report.summary(),
        "seconds": round(time.perf_counter() - started, 4),  # readiness probe + plan + write
        "write_seconds": round(report.seconds, 4),
    }


def _apply(lab: Lab) -> SyncReport:
    """A fresh lab: routes, DNS, every pod's resolv.conf, then a full sync everywhere."""
    started = time.perf_counter()
    ready = probe_ready(lab)
    plan = current_plan(lab, ready)
    members = _members(lab)
    node_dns = (
        dns.node_dns_lines(dns_vip(lab.topology.cluster), _hosts(lab)) if _dns_enabled(lab) else []
    )
    setup = {
        node: [*_route_lines(lab, node), *node_dns, *_resolv_lines(lab, lab.pods_on(node))]
        for node in members
    }
    report = program(lab, members, proxy_mode(lab), None, plan, {}, before=setup, fresh=True)
    _record(lab, plan, ready, report, "lab up", started)
    return report


def sync(
    lab: Lab, changed_pods: Sequence[str] = (), *, reason: str = "", also: Sequence[str] = ()
) -> SyncReport:
    """Re-read readiness where pods changed, re-program every node (partial where it can).

    With no changed pods it still checks every node's rules against what labkit
    wrote last, and rewrites a node whose rules were changed by hand. `also`:
    lines every node runs first, in the same exec.
    """
    started = time.perf_counter()
    state = layer_state(lab)
    topology = lab.topology
    old = plan_from_json(state["plan"]) if "plan" in state else None
    changed = [p for p in changed_pods if p in topology.pods]
    probe_nodes = {topology.pods[p].node for p in changed}
    ready = {
        p
        for p in ready_pods(lab)
        if p in topology.pods and topology.pods[p].node not in probe_nodes
    }
    ready |= probe_ready(lab, probe_nodes)
    plan = current_plan(lab, ready)
    gone = dns.forget_pods_lines(p for p in changed_pods if p not in topology.pods)
    members = _members(lab)
    before = {
        node: [
            *also,
            *gone,
            *_resolv_lines(lab, [p for p in changed if topology.pods[p].node == node]),
        ]
        for node in members
    }
    conntrack = conntrack_flushes(old, plan) if old is not None else []
    report = program(
        lab, members, proxy_mode(lab), old, plan, state.get("digests", {}),
        conntrack=conntrack, before=before,
    )  # fmt: skip
    why = reason or (f"pods changed: {', '.join(changed_pods)}" if changed_pods else "check")
    _record(lab, plan, ready, report, why, started)
    return report


def resync(lab: Lab) -> SyncReport:
    """Forget what the nodes were programmed with and write everything again."""
    state = layer_state(lab)
    state.pop("digests", None)
    state.pop("ready", None)
    return sync(lab, reason="full resync")


def last_sync(lab: Lab) -> dict[str, Any] | None:
    """The last sync's summary: kind, seconds until every node committed, nodes restored."""
    found = layer_state(lab).get("last_sync")
    return dict(found) if found else None


# -- services changing on a running lab ------------------------------------------------


def add_service(lab: Lab, name: str, service: Service | dict[str, Any]) -> ServiceHandle:
    """Create a service on a running lab: VIP, rules on every node, DNS name."""
    spec = service if isinstance(service, Service) else Service.model_validate(service)
    if name in lab.topology.services:
        raise UsageError(f"service {name!r} exists already")
    candidate = lab.topology.model_copy(deep=True)
    candidate.services[name] = spec
    problems = [p for p in check_services(candidate) if p.path[:2] == ("services", name)]
    if problems:
        raise UsageError("; ".join(str(p) for p in problems))
    first = not lab.topology.services
    lab.topology.services[name] = spec
    _services_changed(lab, first)
    return service_handle(lab, name)


def delete_service(lab: Lab, name: str) -> None:
    _service(lab, name)
    del lab.topology.services[name]
    state = layer_state(lab)
    state.get("vips", {}).pop(name, None)
    state["node_ports"] = {
        k: v for k, v in state.get("node_ports", {}).items() if not k.startswith(f"{name}/")
    }
    _services_changed(lab, False)


def _services_changed(lab: Lab, first: bool) -> None:
    if first:
        _apply(lab)
    else:
        # The hosts file too (also when the last service went: its name must go), same exec.
        hosts = dns.hosts_update_lines(_hosts(lab)) if lab.topology.cluster.dns else []
        sync(lab, reason="services changed", also=hosts)
    lab.save()


# -- the layer --------------------------------------------------------------------------


def _features(lab: Lab) -> list[tuple[str, str]]:
    mode = lab.topology.cluster.proxy_mode
    needed = [
        ("conntrack", "the service proxy"),
        ("br_netfilter", "services with endpoints on the caller's bridge"),
    ]
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
    if any(s.session_affinity == "ClientIP" for s in lab.topology.services.values()):
        needed.append(("recent", "ClientIP session affinity in proxy mode iptables"))
    return needed


def _notes(lab: Lab, name: str, found: list[ServiceEndpoint]) -> list[str]:
    service = lab.topology.services[name]
    if found:
        return []
    selector = ",".join(f"{k}={v}" for k, v in service.selector.items()) or "(empty)"
    picked = [p for p, pod in lab.topology.pods.items() if selects(service, pod)]
    if not picked:
        return [f"selector {selector} matches no pod: connections are refused"]
    return [f"no ready endpoint (pods {', '.join(picked)} not ready or lack the target port)"]


def describe(lab: Lab) -> dict[str, Any]:
    """What `labkit status` shows: each service, its endpoints, and the proxy's last sync."""
    addresses, ports = vips(lab), node_ports(lab)
    ready = ready_pods(lab)
    services = []
    for name, service in lab.topology.services.items():
        found = service_endpoints(service, lab.topology.pods, lab.addresses.pod_ips, ready)
        services.append(
            {
                "name": name,
                "namespace": service.namespace,
                "type": service.type,
                "vip": str(addresses[name]),
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
                    {"pod": e.pod, "ip": str(e.ip), "node": e.node, "ports": e.ports} for e in found
                ],
                "notes": _notes(lab, name, found),
            }
        )
    mode = proxy_mode(lab)
    proxy: dict[str, Any] = {
        "mode": mode.name + (f" ({mode.backend} backend)" if mode.name == "iptables" else ""),
        "dns": str(dns_vip(lab.topology.cluster)) if _dns_enabled(lab) else None,
        "last_sync": last_sync(lab),
    }
    return {"services": services, "service_proxy": proxy}


class ServicesLayer:
    name = "services"

    def wanted(self, lab: Lab) -> bool:
        return bool(lab.topology.services) or lab.topology.cluster.proxy_mode == "ipvs"

    def check(self, lab: Lab) -> None:
        for feature, what in _features(lab):
            features.require(feature, what)

    def apply(self, lab: Lab) -> None:
        _apply(lab)

    def sync(self, lab: Lab, changed_pods: Sequence[str]) -> None:
        sync(lab, changed_pods)

    def describe(self, lab: Lab) -> dict[str, Any]:
        return describe(lab)


LAYERS.append(ServicesLayer())
