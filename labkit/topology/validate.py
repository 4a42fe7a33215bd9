"""Checks that relate one part of a topology to another.

Each check returns `Problem`s with the path of the offending value, so the
loader can point at its line. Nothing here touches Docker.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network

from labkit.errors import Problem
from labkit.topology.model import PolicyPeer, PolicyPort, Service, Topology

NODE_PORT_RANGE = range(30000, 32768)


def check_references(topology: Topology) -> list[Problem]:
    problems: list[Problem] = []
    for check in CHECKS:
        problems.extend(check(topology))
    return problems


def _known(names: object) -> str:
    return ", ".join(sorted(names))  # type: ignore[call-overload]


def check_networks(topology: Topology) -> Iterator[Problem]:
    for name, node in topology.nodes.items():
        if not node.networks and len(topology.networks) != 1:
            yield Problem(("nodes", name, "networks"), "say which networks the node is on")
        for index, network in enumerate(node.networks):
            if network not in topology.networks:
                yield Problem(
                    ("nodes", name, "networks", index),
                    f"unknown network {network!r} (known: {_known(topology.networks)})",
                )
        if len(set(node.networks)) != len(node.networks):
            yield Problem(("nodes", name, "networks"), "a network is listed twice")
        if "router" in node.roles and len(networks_of(topology, name)) < 2:
            yield Problem(
                ("nodes", name, "roles"), "a router must be on at least two networks"
            )
        for index, (destination, router) in enumerate(node.routes.items()):
            if destination not in topology.networks:
                yield Problem(("nodes", name, "routes", destination), "unknown network")
            if router not in topology.nodes:
                yield Problem(("nodes", name, "routes", destination), f"unknown node {router!r}")
            elif "router" not in topology.nodes[router].roles:
                yield Problem(
                    ("nodes", name, "routes", destination), f"node {router!r} is not a router"
                )
            elif destination in topology.networks:
                yield from _check_route_via(topology, name, destination, router)
            del index


def _check_route_via(
    topology: Topology, node: str, destination: str, router: str
) -> Iterator[Problem]:
    """A static route's router must be on the destination and next to the node."""
    path = ("nodes", node, "routes", destination)
    on = networks_of(topology, router)
    if destination not in on:
        yield Problem(
            path, f"router {router!r} is not on network {destination!r} (it is on {_known(on)})"
        )
    if not set(on) & set(networks_of(topology, node)):
        yield Problem(
            path,
            f"router {router!r} shares no network with node {node!r} "
            f"(router on {_known(on)}; node on {_known(networks_of(topology, node))})",
        )


def check_cidrs(topology: Topology) -> Iterator[Problem]:
    cluster = topology.cluster
    ranges: list[tuple[tuple[str | int, ...], IPv4Network]] = [
        (("cluster", "pod_cidr"), cluster.pod_cidr),
        (("cluster", "service_cidr"), cluster.service_cidr),
    ]
    ranges += [
        (("networks", name, "subnet"), net.subnet)
        for name, net in topology.networks.items()
        if net.subnet is not None
    ]
    for i, (path_a, net_a) in enumerate(ranges):
        for path_b, net_b in ranges[i + 1 :]:
            if net_a.overlaps(net_b):
                yield Problem(path_b, f"{net_b} overlaps {'.'.join(map(str, path_a))} ({net_a})")
    for name, net in topology.networks.items():
        if net.subnet is not None and net.subnet.prefixlen > 29:
            yield Problem(("networks", name, "subnet"), f"{net.subnet} is too small (max /29)")
        elif net.subnet is not None:
            on_it = [node for node in topology.nodes if name in networks_of(topology, node)]
            if len(on_it) + 2 > net.subnet.num_addresses - 2:
                yield Problem(
                    ("networks", name, "subnet"),
                    f"{net.subnet} has no room for {len(on_it)} nodes",
                )
    if cluster.node_prefix < cluster.pod_cidr.prefixlen:
        yield Problem(
            ("cluster", "node_prefix"),
            f"/{cluster.node_prefix} is larger than the pod CIDR {cluster.pod_cidr}",
        )
    else:
        members = len(topology.member_nodes())
        available = 2 ** (cluster.node_prefix - cluster.pod_cidr.prefixlen)
        if members > available:
            yield Problem(
                ("cluster", "pod_cidr"),
                f"{cluster.pod_cidr} gives only {available} node subnets of "
                f"/{cluster.node_prefix}, the topology has {members} nodes",
            )


def check_pods(topology: Topology) -> Iterator[Problem]:
    members = topology.member_nodes()
    seen_ips: dict[object, str] = {}
    host_ports: dict[tuple[str, int, str], str] = {}
    for name, pod in topology.pods.items():
        if pod.node not in topology.nodes:
            yield Problem(
                ("pods", name, "node"), f"unknown node {pod.node!r} (known: {_known(members)})"
            )
        elif pod.node not in members:
            yield Problem(
                ("pods", name, "node"),
                f"node {pod.node!r} is a {'/'.join(topology.nodes[pod.node].roles)}, "
                "it runs no pods",
            )
        if pod.ip is not None:
            if pod.ip in seen_ips:
                yield Problem(("pods", name, "ip"), f"{pod.ip} is pinned by pod {seen_ips[pod.ip]!r} too")
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


def check_backend(topology: Topology) -> Iterator[Problem]:
    cluster = topology.cluster
    if cluster.backend == "host-gw":
        yield from _check_host_gw_adjacency(topology)
    elif cluster.backend != "none":
        yield from _check_underlay_reachability(topology)
    yield from _check_bgp(topology)


def _apart(topology: Topology) -> list[tuple[str, str]]:
    """Pairs of cluster nodes that share no underlay network.

    Nodes on an unknown network or on none are left out: that has its own problem.
    """
    members = [
        node
        for node in topology.member_nodes()
        if networks_of(topology, node)
        and all(net in topology.networks for net in networks_of(topology, node))
    ]
    return [
        (a, b)
        for i, a in enumerate(members)
        for b in members[i + 1 :]
        if not set(networks_of(topology, a)) & set(networks_of(topology, b))
    ]


def _on(topology: Topology, node: str) -> str:
    return f"{node} (on {_known(networks_of(topology, node)) or 'no network'})"


def _check_host_gw_adjacency(topology: Topology) -> Iterator[Problem]:
    apart = _apart(topology)
    if apart:
        pairs = "; ".join(f"{_on(topology, a)} and {_on(topology, b)}" for a, b in apart)
        yield Problem(
            ("cluster", "backend"),
            "host-gw routes each node's pod subnet via that node's underlay address, so every "
            "pair of nodes must share one L2 segment (underlay network); these nodes are not "
            f"adjacent: {pairs}. Across routers use vxlan, udp or bgp",
        )


def _check_underlay_reachability(topology: Topology) -> Iterator[Problem]:
    """Nodes on different segments need a router on both (the backend's peers)."""
    routers = [name for name, node in topology.nodes.items() if "router" in node.roles]
    cut_off: dict[str, list[str]] = {}
    for a, b in _apart(topology):
        nets_a, nets_b = set(networks_of(topology, a)), set(networks_of(topology, b))
        joined = any(
            nets_a & set(networks_of(topology, r)) and nets_b & set(networks_of(topology, r))
            for r in routers
        )
        if not joined:
            cut_off.setdefault(b, []).append(a)
    for node, peers in cut_off.items():
        yield Problem(
            ("nodes", node, "networks"),
            f"node {_on(topology, node)} cannot reach "
            f"{', '.join(_on(topology, peer) for peer in peers)}: no router is on both networks, "
            f"and the {topology.cluster.backend} backend needs every node to reach every other",
        )


def _check_bgp(topology: Topology) -> Iterator[Problem]:
    bgp = topology.cluster.bgp
    if not (1 <= bgp.asn <= 4294967295):
        yield Problem(
            ("cluster", "bgp", "asn"), f"AS number {bgp.asn} is out of range 1-4294967295"
        )
    if bgp.keepalive >= bgp.hold_time:
        yield Problem(
            ("cluster", "bgp", "keepalive"),
            f"keepalive {bgp.keepalive} s must be shorter than the hold time {bgp.hold_time} s "
            "(a third of it is usual)",
        )
    members = topology.member_nodes()
    for index, reflector in enumerate(bgp.route_reflectors):
        path = ("cluster", "bgp", "route_reflectors", index)
        if reflector not in topology.nodes:
            yield Problem(
                path,
                f"route reflector {reflector!r} is not a node (cluster nodes: {_known(members)})",
            )
        elif reflector not in members:
            roles = "/".join(topology.nodes[reflector].roles)
            yield Problem(
                path,
                f"route reflector {reflector!r} is a {roles} node, not a cluster node "
                f"(cluster nodes: {_known(members)})",
            )
        elif reflector in bgp.route_reflectors[:index]:
            yield Problem(path, f"route reflector {reflector!r} is listed twice")


def networks_of(topology: Topology, node: str) -> list[str]:
    """The networks a node is on, the default (the only network) filled in."""
    listed = topology.nodes[node].networks
    if listed:
        return list(listed)
    return list(topology.networks)[:1] if len(topology.networks) == 1 else []


CHECKS = [check_networks, check_cidrs, check_pods, check_backend]


# -- ingress and VRRP ------------------------------------------------------------

# A DNS name as an Ingress host: no port, no wildcard, lower case.
HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
# Characters that have a meaning in a proxy's configuration syntax.
PATH_FORBIDDEN = re.compile(r"[\s{};\"'#\\]")
VRRP_PRIORITIES = range(1, 255)  # 255 belongs to the owner of the address, 0 means "leaving"


def _ingress_backend(
    topology: Topology, path: tuple[str | int, ...], service: str, port: int | str
) -> Iterator[Problem]:
    spec = topology.services.get(service)
    if spec is None:
        yield Problem(
            (*path, "service"),
            f"unknown service {service!r} (known: {_known(topology.services) or 'none'})",
        )
        return
    matching = [p for p in spec.ports if port in (p.name, p.port, p.name or str(p.port))]
    if not matching:
        ports = ", ".join(f"{p.port}" + (f" ({p.name})" if p.name else "") for p in spec.ports)
        yield Problem((*path, "port"), f"service {service!r} has no port {port!r} (ports: {ports})")
    elif matching[0].protocol != "TCP":
        yield Problem(
            (*path, "port"), f"port {port!r} of service {service!r} is UDP; an ingress proxies HTTP"
        )


def _route_key(host: str | None, path: str, exact: bool) -> tuple[str | None, str]:
    """Prefix paths ignore a trailing slash, as Kubernetes does."""
    return host, path if exact or path == "/" else (path.rstrip("/") or "/")


def check_ingress(topology: Topology) -> Iterator[Problem]:
    ingress = topology.ingress
    if ingress is None:
        return
    members = topology.member_nodes()
    vrrp = topology.vrrp
    for index, node in enumerate(ingress.nodes):
        path = ("ingress", "nodes", index)
        if node not in topology.nodes:
            yield Problem(path, f"unknown node {node!r} (cluster nodes: {_known(members)})")
        elif node not in members:
            roles = "/".join(topology.nodes[node].roles)
            yield Problem(
                path,
                f"node {node!r} is a {roles} node; an edge node must be a cluster node "
                f"(its proxy sends to pod IPs and Service VIPs; cluster nodes: {_known(members)})",
            )
        elif node in ingress.nodes[:index]:
            yield Problem(path, f"node {node!r} is listed twice")
        elif vrrp is not None and vrrp.network in topology.networks:
            on = networks_of(topology, node)
            if vrrp.network not in on:
                yield Problem(
                    path,
                    f"edge node {node!r} is not on network {vrrp.network!r} of the VRRP VIP "
                    f"(it is on {_known(on) or 'no network'})",
                )
    seen: dict[tuple[str | None, str], int] = {}
    for index, rule in enumerate(ingress.rules):
        path = ("ingress", "rules", index)
        yield from _ingress_backend(topology, path, rule.service, rule.port)
        if rule.host is not None and not HOST_NAME.match(rule.host):
            yield Problem(
                (*path, "host"),
                f"host {rule.host!r} is not a DNS name (lower case letters, digits, dashes and "
                "dots; no port, no wildcard)",
            )
        if not rule.path.startswith("/"):
            yield Problem((*path, "path"), f"path {rule.path!r} must start with '/'")
            continue
        if PATH_FORBIDDEN.search(rule.path):
            yield Problem(
                (*path, "path"), f"path {rule.path!r} has a space, quote, brace, ';', '#' or '\\'"
            )
        key = _route_key(rule.host, rule.path, rule.path_type == "Exact")
        if key in seen:
            yield Problem(
                (*path, "path"),
                f"host {rule.host or '(any)'} path {rule.path} is routed by "
                f"ingress.rules.{seen[key]} already",
            )
        seen.setdefault(key, index)
    if ingress.default_backend is not None:
        backend = ingress.default_backend
        yield from _ingress_backend(
            topology, ("ingress", "default_backend"), backend.service, backend.port
        )


def check_vrrp(topology: Topology) -> Iterator[Problem]:
    vrrp = topology.vrrp
    if vrrp is None:
        return
    known_network = vrrp.network in topology.networks
    if not known_network:
        yield Problem(
            ("vrrp", "network"),
            f"unknown network {vrrp.network!r} (known: {_known(topology.networks)})",
        )
    first_with: dict[int, str] = {}
    for node, priority in vrrp.priorities.items():
        path = ("vrrp", "priorities", node)
        if node not in topology.nodes:
            yield Problem(path, f"unknown node {node!r} (known: {_known(topology.nodes)})")
        elif known_network and vrrp.network not in networks_of(topology, node):
            on = networks_of(topology, node)
            yield Problem(
                path,
                f"node {node!r} is not on network {vrrp.network!r} (it is on "
                f"{_known(on) or 'no network'}): it cannot hold the VIP",
            )
        elif topology.ingress is not None and node not in topology.ingress.nodes:
            yield Problem(
                path,
                f"node {node!r} runs no ingress controller (ingress.nodes: "
                f"{_known(topology.ingress.nodes)}): the VIP would lead nowhere",
            )
        if priority not in VRRP_PRIORITIES:
            yield Problem(
                path, f"priority {priority} is out of range 1-254 (255 is the address owner's)"
            )
        elif priority in first_with:
            yield Problem(
                path,
                f"priority {priority} ties with node {first_with[priority]!r}: VRRP would "
                "settle it by the higher IP address; give each node its own priority",
            )
        first_with.setdefault(priority, node)
    centiseconds = vrrp.advert_interval * 100
    if abs(centiseconds - round(centiseconds)) > 1e-6 or not 1 <= round(centiseconds) <= 4095:
        yield Problem(
            ("vrrp", "advert_interval"),
            f"{vrrp.advert_interval:g} s: VRRPv3 counts in centiseconds, 0.01 to 40.95 s",
        )
    subnet = topology.networks[vrrp.network].subnet if known_network else None
    if subnet is not None:
        yield from _vip_in_subnet(topology, vrrp.vip, vrrp.network, subnet)


def _vip_in_subnet(
    topology: Topology, vip: IPv4Address, network: str, subnet: IPv4Network
) -> Iterator[Problem]:
    """The VIP is a free host address of the (pinned) subnet."""
    from labkit.topology.addressing import FIRST_NODE_HOST, node_addresses

    path = ("vrrp", "vip")
    if vip not in subnet:
        yield Problem(path, f"{vip} is outside network {network!r} ({subnet})")
        return
    if vip in (subnet.network_address, subnet.broadcast_address):
        yield Problem(path, f"{vip} is the network or broadcast address of {subnet}")
        return
    if vip < subnet.network_address + FIRST_NODE_HOST:
        yield Problem(path, f"{vip} is the gateway address of network {network!r}")
    for node, addresses in node_addresses(topology, {network: subnet}).items():
        if addresses.get(network) == vip:
            yield Problem(path, f"{vip} is the address of node {node!r} on network {network!r}")


CHECKS += [check_ingress, check_vrrp]


# -- network policy, pinned and floating IPs ----------------------------------------

PORT_RANGE = range(1, 65536)


def _check_pinned_ip(topology: Topology, pod: str, node: str, ip: IPv4Address) -> Iterator[Problem]:
    """A pinned pod IP is a host address of its node's pod subnet, not the gateway."""
    from labkit.topology.addressing import node_subnets

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
            path, f"{ip} is the network, gateway or broadcast address of node {node!r}'s subnet {subnet}"
        )


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
            yield Problem(path, "ip_block cannot be combined with pod_selector or namespace_selector")
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
            yield Problem((*path, "end_port"), f"end_port {port.end_port} is below port {port.port}")


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


def check_floating_ips(topology: Topology) -> Iterator[Problem]:
    """Floating IPs: outside the pod, service and underlay ranges, one per address, a known pod."""
    from labkit.topology.addressing import UNDERLAY_POOL

    cluster = topology.cluster
    taken: dict[IPv4Address, str] = {}
    for name, floating in topology.floating_ips.items():
        path = ("floating_ips", name)
        ip = floating.ip
        if floating.pod not in topology.pods:
            yield Problem((*path, "pod"), f"unknown pod {floating.pod!r} (known: {_known(topology.pods) or 'none'})")
        ranges = [("the pod CIDR", cluster.pod_cidr), ("the service CIDR", cluster.service_cidr)]
        ranges += [(f"network {n!r}", net.subnet) for n, net in topology.networks.items() if net.subnet]
        ranges.append(("the pool underlay subnets are picked from", UNDERLAY_POOL))
        for what, network in ranges:
            if ip in network:
                yield Problem((*path, "ip"), f"{ip} is inside {what} ({network})")
                break
        if ip in taken:
            yield Problem((*path, "ip"), f"{ip} is floating IP {taken[ip]!r} already")
        taken.setdefault(ip, name)


CHECKS += [check_policies, check_floating_ips]


# -- services ---------------------------------------------------------------------------


def _check_service_ports(name: str, service: Service) -> Iterator[Problem]:
    base: tuple[str | int, ...] = ("services", name, "ports")
    seen_names: set[str] = set()
    seen_ports: set[tuple[int, str]] = set()
    for index, port in enumerate(service.ports):
        if len(service.ports) > 1 and not port.name:
            yield Problem((*base, index), "a service with several ports must name each of them")
        if port.name and port.name in seen_names:
            yield Problem((*base, index, "name"), f"port name {port.name!r} is used twice")
        if (port.port, port.protocol) in seen_ports:
            yield Problem((*base, index, "port"), f"port {port.port}/{port.protocol} is listed twice")
        seen_names.add(port.name or "")
        seen_ports.add((port.port, port.protocol))
        if port.node_port is not None:
            if service.type != "NodePort":
                yield Problem((*base, index, "node_port"), "a node port needs `type: NodePort`")
            elif port.node_port not in NODE_PORT_RANGE:
                yield Problem(
                    (*base, index, "node_port"), f"node port {port.node_port} is out of range 30000-32767"
                )


def _check_target_port_names(topology: Topology, name: str, service: Service) -> Iterator[Problem]:
    from labkit.topology.services_alloc import selects

    picked = [pod for pod in topology.pods.values() if selects(service, pod)]
    candidates = picked or list(topology.pods.values())
    for index, port in enumerate(service.ports):
        if not isinstance(port.target_port, str):
            continue
        declared = {p.name for pod in candidates for p in pod.ports if p.protocol == port.protocol}
        if port.target_port not in declared:
            whose = "the pods its selector picks" if picked else "any pod"
            yield Problem(
                ("services", name, "ports", index, "target_port"),
                f"no {port.protocol} port named {port.target_port!r} is declared by {whose}",
            )


def check_services(topology: Topology) -> Iterator[Problem]:
    """VIPs inside the service CIDR and unique, node ports in range and unique, target ports
    that exist. A selector that matches nothing is allowed (the service refuses connections)."""
    from labkit.topology.services_alloc import dns_vip

    cidr = topology.cluster.service_cidr
    vips: dict[IPv4Address, str] = {dns_vip(topology.cluster): "the cluster DNS"}
    node_ports: dict[int, str] = {}
    for name, service in topology.services.items():
        if service.vip is not None:
            path = ("services", name, "vip")
            if service.vip not in cidr:
                yield Problem(path, f"{service.vip} is outside the service CIDR {cidr}")
            elif service.vip in vips:
                yield Problem(path, f"{service.vip} is taken by {vips[service.vip]}")
            vips[service.vip] = f"service {name!r}"
        yield from _check_service_ports(name, service)
        yield from _check_target_port_names(topology, name, service)
        own: set[int] = set()
        for index, port in enumerate(service.ports):
            if port.node_port is None or port.node_port in own:
                continue
            own.add(port.node_port)
            if port.node_port in node_ports:
                yield Problem(
                    ("services", name, "ports", index, "node_port"),
                    f"node port {port.node_port} is taken by {node_ports[port.node_port]}",
                )
            node_ports[port.node_port] = f"service {name!r}"


CHECKS += [check_services]
