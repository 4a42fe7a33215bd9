"""Pod checks: the node each runs on, pinned IPs, host ports."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address

from labkit.errors import Problem
from labkit.topology.addressing import node_subnets
from labkit.topology.checks.common import known
from labkit.topology.model import Topology


def check_pods(topology: Topology) -> Iterator[Problem]:
    members = topology.member_nodes()
    seen_ips: dict[object, str] = {}
    host_ports: dict[tuple[str, int, str], str] = {}
    for name, pod in topology.pods.items():
        if pod.node not in topology.nodes:
            yield Problem(
                ("pods", name, "node"), f"unknown node {pod.node!r} (known: {known(members)})"
            )
        elif pod.node not in members:
            yield Problem(
                ("pods", name, "node"),
                f"node {pod.node!r} is a {'/'.join(topology.nodes[pod.node].roles)}, "
                "it runs no pods",
            )
        if pod.ip is not None:
            if pod.ip in seen_ips:
                yield Problem(
                    ("pods", name, "ip"), f"{pod.ip} is pinned by pod {seen_ips[pod.ip]!r} too"
                )
            seen_ips[pod.ip] = name
            yield from _check_pinned_ip(topology, name, pod.node, pod.ip)
        for index, port in enumerate(pod.ports):
            if port.host_port is None:
                continue
            key = (pod.node, port.host_port, port.protocol)
            if key in host_ports:
                yield Problem(
                    ("pods", name, "ports", index, "host_port"),
                    f"host port {port.host_port}/{port.protocol} on node {pod.node!r} is "
                    f"taken by pod {host_ports[key]!r}",
                )
            host_ports[key] = name


def _check_pinned_ip(topology: Topology, pod: str, node: str, ip: IPv4Address) -> Iterator[Problem]:
    """A pinned pod IP is a host address of its node's pod subnet, not the gateway."""
    path = ("pods", pod, "ip")
    cluster = topology.cluster
    if ip not in cluster.pod_cidr:
        yield Problem(path, f"{ip} is outside the pod CIDR {cluster.pod_cidr}")
        return
    if cluster.node_prefix < cluster.pod_cidr.prefixlen:
        return  # check_cidrs says so
    subnet = node_subnets(topology).get(node)
    if subnet is None:
        return  # not a cluster node: check_pods says so
    if ip not in subnet:
        yield Problem(path, f"{ip} is outside node {node!r}'s pod subnet {subnet}")
    elif ip in (subnet.network_address, subnet.network_address + 1, subnet.broadcast_address):
        yield Problem(
            path,
            f"{ip} is the network, gateway or broadcast address of node {node!r}'s subnet {subnet}",
        )
