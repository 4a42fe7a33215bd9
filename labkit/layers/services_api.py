"""The Services API of a running lab (`lab.services`, `lab.service(name)`)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from labkit.core.cluster import Cluster
from labkit.dataplane import dns
from labkit.errors import UsageError
from labkit.layers import follow_services
from labkit.layers import services as programming
from labkit.layers.proxy_program import SyncReport
from labkit.layers.service_state import (
    endpoints,
    last_sync,
    layer_state,
    lb_ips,
    node_ports,
    service_spec,
    service_vip,
)
from labkit.topology.keys import resolve
from labkit.topology.model import Service, ServicePort
from labkit.topology.services_alloc import (
    ServiceEndpoint,
    find_port,
    health_check_key,
    node_port_key,
)
from labkit.topology.validate import check_services


@dataclass
class ServiceHandle:
    """A service of a running cluster: its VIP, ports, node ports and endpoints."""

    cluster: Cluster
    name: str

    def __repr__(self) -> str:
        return f"<service {self.name} {self.vip}>"

    @property
    def spec(self) -> Any:
        return service_spec(self.cluster, self.name)

    @property
    def vip(self) -> IPv4Address:
        return service_vip(self.cluster, self.name)

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
        allocated = node_ports(self.cluster)
        if key not in allocated:
            raise UsageError(f"service {self.name} is of type {self.spec.type}: no node port")
        return allocated[key]

    @property
    def lb_ip(self) -> IPv4Address:
        """The LoadBalancer address assigned from the pool."""
        found = lb_ips(self.cluster).get(self.name)
        if found is None:
            raise UsageError(f"service {self.name} is of type {self.spec.type}: no LB address")
        return found

    @property
    def health_check_node_port(self) -> int:
        """kube-proxy's health check node port (LoadBalancer, externalTrafficPolicy Local)."""
        found = node_ports(self.cluster).get(health_check_key(self.name))
        if found is None:
            raise UsageError(f"service {self.name} has no health check node port")
        return found

    def endpoints(self, fresh: bool = False) -> list[ServiceEndpoint]:
        return endpoints(self.cluster, self.name, fresh=fresh)

    @property
    def dns_name(self) -> str:
        return dns.service_name(self.name, self.namespace)


class Services:
    """Services on a running lab: look up, add, delete, re-program."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def get(self, name: str) -> ServiceHandle:
        """A service by key, `NS/NAME`, or a bare name (unambiguous, or in default)."""
        return ServiceHandle(self.cluster, self.key(name))

    def key(self, name: str) -> str:
        services = self.cluster.topology.services
        if name in services or not services:
            service_spec(self.cluster, name)  # the usual error when there is none
            return name
        return resolve(name, services, "service")

    def all(self) -> list[ServiceHandle]:
        return [ServiceHandle(self.cluster, name) for name in self.cluster.topology.services]

    def endpoints(self, name: str, *, fresh: bool = False) -> list[ServiceEndpoint]:
        return endpoints(self.cluster, self.key(name), fresh=fresh)

    def add(self, name: str, service: Service | dict[str, Any]) -> ServiceHandle:
        return add_service(self.cluster, name, service)

    def delete(self, name: str) -> None:
        delete_service(self.cluster, name)

    def sync(self) -> SyncReport:
        """Check every node's rules against what labkit wrote; rewrite drifted ones."""
        return programming.sync(self.cluster)

    def resync(self) -> SyncReport:
        return programming.resync(self.cluster)

    def set_terminating(self, pods: list[str], terminating: bool = True) -> SyncReport:
        """Mark pods as being deleted (or not any more): alive, they keep serving, but
        their endpoints take new connections only where a service has no ready one."""
        unknown = sorted(set(pods) - set(self.cluster.topology.pods))
        if unknown:
            raise UsageError(f"no pod(s) {', '.join(unknown)}")
        state = layer_state(self.cluster)
        marked = set(state.get("terminating", []))
        state["terminating"] = sorted(marked | set(pods) if terminating else marked - set(pods))
        report = programming.sync(self.cluster, reason="terminating: " + ", ".join(pods))
        follow_services(self.cluster)
        self.cluster.save()
        return report

    def last_sync(self) -> dict[str, Any] | None:
        return last_sync(self.cluster)


def add_service(cluster: Cluster, name: str, service: Service | dict[str, Any]) -> ServiceHandle:
    """Create a service on a running cluster: VIP, rules on every node, DNS name."""
    spec = service if isinstance(service, Service) else Service.model_validate(service)
    if name in cluster.topology.services:
        raise UsageError(f"service {name!r} exists already")
    candidate = cluster.topology.model_copy(deep=True)
    candidate.services[name] = spec
    problems = [p for p in check_services(candidate) if p.path[:2] == ("services", name)]
    if problems:
        raise UsageError("; ".join(str(p) for p in problems))
    first = not cluster.topology.services
    cluster.topology.services[name] = spec
    _services_changed(cluster, first)
    return ServiceHandle(cluster, name)


def delete_service(cluster: Cluster, name: str) -> None:
    service_spec(cluster, name)
    del cluster.topology.services[name]
    state = layer_state(cluster)
    state.get("vips", {}).pop(name, None)
    state.get("lb_ips", {}).pop(name, None)
    state["node_ports"] = {
        k: v for k, v in state.get("node_ports", {}).items() if not k.startswith(f"{name}/")
    }
    _services_changed(cluster, False)


def _services_changed(cluster: Cluster, first: bool) -> None:
    if first:
        programming.apply_services(cluster)
    else:
        programming.sync(cluster, reason="services changed")
    follow_services(cluster)  # DNS records, health checks, LB addresses: the layers that care
    cluster.save()
