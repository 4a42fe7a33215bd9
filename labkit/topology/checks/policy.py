"""Network policy checks (CIDRs, ports) and floating IP checks."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network

from labkit.errors import Problem
from labkit.topology.addressing import UNDERLAY_POOL
from labkit.topology.checks.common import known
from labkit.topology.model import PolicyPeer, PolicyPort, Topology

PORT_RANGE = range(1, 65536)


def check_policies(topology: Topology) -> Iterator[Problem]:
    """Malformed CIDRs and ports. A namespace nobody has is allowed (`labkit status` says so)."""
    for name, policy in topology.policies.items():
        for index, rule in enumerate(policy.ingress):
            base = ("policies", name, "ingress", index)
            yield from _check_peers((*base, "from"), rule.from_)
            yield from _check_policy_ports((*base, "ports"), rule.ports)
        for index, egress in enumerate(policy.egress):
            base = ("policies", name, "egress", index)
            yield from _check_peers((*base, "to"), egress.to)
            yield from _check_policy_ports((*base, "ports"), egress.ports)


def _parse_cidr(text: str) -> IPv4Network | None:
    """As Kubernetes parses an ipBlock CIDR: host bits may be set."""
    try:
        return IPv4Network(text.strip(), strict=False)
    except ValueError:
        return None


def _check_cidr(path: tuple[str | int, ...], text: str) -> Iterator[Problem]:
    if _parse_cidr(text) is None:
        yield Problem(path, f"{text!r} is not a CIDR (like 10.0.0.0/8)")


def _check_peers(base: tuple[str | int, ...], peers: list[PolicyPeer]) -> Iterator[Problem]:
    for index, peer in enumerate(peers):
        path = (*base, index)
        block = peer.ip_block
        if block is None and peer.pod_selector is None and peer.namespace_selector is None:
            yield Problem(path, "a peer needs pod_selector, namespace_selector or ip_block")
        if block is None:
            continue
        if peer.pod_selector is not None or peer.namespace_selector is not None:
            yield Problem(
                path, "ip_block cannot be combined with pod_selector or namespace_selector"
            )
        yield from _check_cidr((*path, "ip_block", "cidr"), block.cidr)
        whole = _parse_cidr(block.cidr)
        for at, text in enumerate(block.except_):
            where = (*path, "ip_block", "except", at)
            hole = _parse_cidr(text)
            if hole is None:
                yield from _check_cidr(where, text)
            elif whole is not None and not hole.subnet_of(whole):
                yield Problem(where, f"{text} is not inside the block {block.cidr}")


def _check_policy_ports(base: tuple[str | int, ...], ports: list[PolicyPort]) -> Iterator[Problem]:
    for index, port in enumerate(ports):
        path = (*base, index)
        if isinstance(port.port, int) and port.port not in PORT_RANGE:
            yield Problem((*path, "port"), f"port {port.port} is out of range 1-65535")
        if isinstance(port.port, str) and not port.port.strip():
            yield Problem((*path, "port"), "a named port needs a name")
        if port.end_port is None:
            continue
        if not isinstance(port.port, int):
            yield Problem((*path, "end_port"), "end_port needs a numbered port")
        elif port.end_port not in PORT_RANGE:
            yield Problem((*path, "end_port"), f"port {port.end_port} is out of range 1-65535")
        elif port.end_port < port.port:
            yield Problem(
                (*path, "end_port"), f"end_port {port.end_port} is below port {port.port}"
            )


def check_floating_ips(topology: Topology) -> Iterator[Problem]:
    """Floating IPs: outside the pod, service and underlay ranges, one per address, a known pod."""
    cluster = topology.cluster
    taken: dict[IPv4Address, str] = {}
    for name, floating in topology.floating_ips.items():
        path = ("floating_ips", name)
        ip = floating.ip
        if floating.pod not in topology.pods:
            yield Problem(
                (*path, "pod"),
                f"unknown pod {floating.pod!r} (known: {known(topology.pods) or 'none'})",
            )
        ranges = [("the pod CIDR", cluster.pod_cidr), ("the service CIDR", cluster.service_cidr)]
        ranges += [
            (f"network {n!r}", net.subnet) for n, net in topology.networks.items() if net.subnet
        ]
        ranges.append(("the pool underlay subnets are picked from", UNDERLAY_POOL))
        for what, network in ranges:
            if ip in network:
                yield Problem((*path, "ip"), f"{ip} is inside {what} ({network})")
                break
        if ip in taken:
            yield Problem((*path, "ip"), f"{ip} is floating IP {taken[ip]!r} already")
        taken.setdefault(ip, name)
