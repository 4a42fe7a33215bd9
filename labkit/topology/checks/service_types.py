"""Checks of the Service features beyond ClusterIP: LoadBalancer and its pool, traffic
policies, external IPs, headless and ExternalName services."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address

from labkit.errors import Problem
from labkit.topology.lb_pool import parse_block, pool_addresses
from labkit.topology.model import Service, Topology


def check_load_balancer_pool(topology: Topology) -> Iterator[Problem]:
    pool = topology.cluster.load_balancer
    if pool is None:
        return
    base = ("cluster", "load_balancer")
    for index, block in enumerate(pool.addresses):
        try:
            parse_block(block)
        except ValueError as error:
            yield Problem((*base, "addresses", index), str(error))
    if pool.mode == "bgp" and pool.peer is None:
        yield Problem((*base, "mode"), "mode bgp needs a peer: the router node to announce to")
    if pool.peer is not None and pool.peer not in topology.nodes:
        yield Problem((*base, "peer"), f"unknown node {pool.peer!r}")


def check_service_types(topology: Topology) -> Iterator[Problem]:
    lb_ips: dict[IPv4Address, str] = {}
    for name, service in topology.services.items():
        yield from _check_one(topology, name, service)
        pinned = service.load_balancer_ip
        if pinned is not None and service.type == "LoadBalancer":
            if pinned in lb_ips:
                yield Problem(
                    ("services", name, "load_balancer_ip"), f"{pinned} is taken by {lb_ips[pinned]}"
                )
            lb_ips[pinned] = f"service {name!r}"


def _check_one(topology: Topology, name: str, service: Service) -> Iterator[Problem]:
    base: tuple[str, ...] = ("services", name)
    kind = service.type
    if kind == "ExternalName":
        if not service.external_name:
            yield Problem((*base, "type"), "an ExternalName service needs `external_name`")
        if service.vip is not None:
            yield Problem((*base, "vip"), "an ExternalName service has no ClusterIP")
    else:
        if service.external_name is not None:
            yield Problem((*base, "external_name"), "`external_name` needs `type: ExternalName`")
        if not service.ports:
            yield Problem((*base, "ports"), "a service needs at least one port")
    if service.headless and kind != "ClusterIP":
        yield Problem((*base, "vip"), f"a headless service (vip: None) cannot be {kind}")
    externally = service.has_node_ports or bool(service.external_ips)
    if service.external_traffic_policy == "Local" and not externally:
        yield Problem(
            (*base, "external_traffic_policy"),
            "Local needs external traffic: type NodePort or LoadBalancer, or external_ips",
        )
    if service.health_check_node_port is not None and not service.needs_health_check_node_port:
        yield Problem(
            (*base, "health_check_node_port"),
            "a health check node port needs `type: LoadBalancer` and external_traffic_policy Local",
        )
    for field in ("load_balancer_ip", "load_balancer_source_ranges"):
        if getattr(service, field) and kind != "LoadBalancer":
            yield Problem((*base, field), f"`{field}` needs `type: LoadBalancer`")
    pool = topology.cluster.load_balancer
    if kind == "LoadBalancer" and pool is None:
        yield Problem((*base, "type"), "LoadBalancer needs an address pool: cluster.load_balancer")
    if kind == "LoadBalancer" and pool is not None and service.load_balancer_ip is not None:
        try:
            inside = service.load_balancer_ip in set(pool_addresses(pool))
        except ValueError:
            inside = True  # the pool's own problem is reported there
        if not inside:
            yield Problem(
                (*base, "load_balancer_ip"),
                f"{service.load_balancer_ip} is outside the load balancer pool",
            )
    cluster = topology.cluster
    for index, address in enumerate(service.external_ips):
        for what, cidr in (("pod", cluster.pod_cidr), ("service", cluster.service_cidr)):
            if address in cidr:
                yield Problem(
                    (*base, "external_ips", index), f"{address} is inside the {what} CIDR {cidr}"
                )
