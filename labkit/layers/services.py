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

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from labkit.dataplane import pods as pod_plan
from labkit.errors import UsageError
from labkit.topology.model import ServicePort
from labkit.topology.services_alloc import (
    ServiceEndpoint,
    allocate_node_ports,
    allocate_vips,
    find_port,
    port_key,
    service_endpoints,
)

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


# -- readiness: one exec per node -----------------------------------------------


def _readiness_script(pods: Iterable[str]) -> str:
    """Per pod: `== <pod> netns|gone`, then `<container> up|down` lines."""
    parts = []
    for pod in pods:
        parts.append(
            f"if [ -e /var/run/netns/{pod} ]; then echo '== {pod} netns'; "
            f"else echo '== {pod} gone'; fi"
        )
        parts.append(pod_plan.containers_alive_script(pod))
    return "\n".join(parts) + "\n"


def parse_readiness(output: str, expected: dict[str, set[str]]) -> set[str]:
    """Ready pods: namespace present and every container the spec names alive."""
    alive: dict[str, set[str]] = {}
    present: set[str] = set()
    current = ""
    for line in output.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "==":
            current = words[1]
            alive.setdefault(current, set())
            if words[2] == "netns":
                present.add(current)
        elif len(words) == 2 and current and words[1] == "up":
            alive[current].add(words[0])
    return {
        pod
        for pod, containers in expected.items()
        if pod in present and containers <= alive.get(pod, set())
    }


def probe_ready(lab: Lab, nodes: Iterable[str] | None = None) -> set[str]:
    """The pods whose containers are all alive, probed with one exec per node."""
    from labkit.lab import parallel

    wanted = set(nodes) if nodes is not None else set(lab.addresses.pod_subnets)

    def on_node(node: str) -> set[str]:
        pods = lab.pods_on(node)
        if not pods:
            return set()
        expected = {pod: set(lab.pod_spec(pod).containers()) for pod in pods}
        output = lab.node(node).exec(_readiness_script(pods)).stdout
        return parse_readiness(output, expected)

    ready: set[str] = set()
    for found in parallel(on_node, sorted(wanted)):
        ready |= found
    return ready


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
        port = self.port(port_name_or_number)
        key = f"{self.name}/{port_key(port)}"
        allocated = node_ports(self.lab)
        if key not in allocated:
            raise UsageError(f"service {self.name} is of type {self.spec.type}: no node port")
        return allocated[key]

    def endpoints(self, fresh: bool = False) -> list[ServiceEndpoint]:
        return endpoints(self.lab, self.name, fresh=fresh)

    @property
    def dns_name(self) -> str:
        return f"{self.name}.{self.namespace}.svc.cluster.local"


def service_handle(lab: Lab, name: str) -> ServiceHandle:
    _service(lab, name)
    return ServiceHandle(lab, name)

