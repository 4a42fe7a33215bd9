"""Backends join the nodes' pod subnets into one flat network.

`backend_scripts` gives each cluster node the script that builds its part.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address

from labkit.dataplane import bgp, hostgw, udp, vxlan
from labkit.dataplane.script import script
from labkit.errors import Problem, TopologyError
from labkit.topology.addressing import Addresses
from labkit.topology.model import Topology
from labkit.topology.networks import networks_of

UNDERLAY_MTU = 1500  # a network's MTU unless the topology sets `networks.X.mtu`
MIN_MTU = 68  # the least an IPv4 link may have (RFC 791)

# Bytes each backend's encapsulation takes from the underlay MTU.
OVERHEAD = {"none": 0, "vxlan": vxlan.OVERHEAD, "host-gw": 0, "udp": udp.OVERHEAD, "bgp": 0}

# Kernel features each backend needs (probed by `check_backend`).
KERNEL_NEEDS: dict[str, tuple[str, ...]] = {
    "none": (),
    "vxlan": ("vxlan",),
    "host-gw": (),
    "udp": ("tun",),
    "bgp": (),
}
# Backends that put pod addresses on the underlay unencapsulated: the lab
# networks must carry frames outside their subnet (see runtime/underlay_probe).
UNENCAPSULATED = frozenset({"host-gw", "bgp"})


def network_mtu(topology: Topology, network: str) -> int:
    return topology.networks[network].mtu or UNDERLAY_MTU


def pod_networks(topology: Topology) -> list[str]:
    """The networks pod traffic may cross: those of the cluster nodes and the routers."""
    carriers = [*topology.member_nodes(), *routers(topology)]
    return [n for n in topology.networks if any(n in networks_of(topology, c) for c in carriers)]


def underlay_mtu(topology: Topology, engine_mtu: int | None = None) -> int:
    """The smallest MTU pod traffic meets on the underlay: what the backend must fit in
    (`engine_mtu`: what the runtime's networks give containers; a Swarm overlay's is smaller)."""
    found = min((network_mtu(topology, n) for n in pod_networks(topology)), default=UNDERLAY_MTU)
    return min(found, engine_mtu) if engine_mtu else found


def mtu_problems(topology: Topology) -> list[Problem]:
    """A network whose MTU leaves the pods less than an IPv4 link needs."""
    overhead = OVERHEAD[topology.cluster.backend]
    return [
        Problem(
            ("networks", network, "mtu"),
            f"MTU {network_mtu(topology, network)} leaves pods "
            f"{network_mtu(topology, network) - overhead} after the {topology.cluster.backend} "
            f"backend's {overhead} bytes: at least {MIN_MTU + overhead} is needed",
        )
        for network in pod_networks(topology)
        if network_mtu(topology, network) - overhead < MIN_MTU
    ]


def pod_mtu(topology: Topology, engine_mtu: int | None = None) -> int:
    """The underlay MTU less the backend's encapsulation, as flannel derives it."""
    problems = mtu_problems(topology)
    if problems:
        raise TopologyError(problems)
    return underlay_mtu(topology, engine_mtu) - OVERHEAD[topology.cluster.backend]


def routers(topology: Topology) -> list[str]:
    """The nodes that forward between underlay networks."""
    return [name for name, spec in topology.nodes.items() if "router" in spec.roles]


def _none_scripts(
    topology: Topology, addresses: Addresses, mtu: int = UNDERLAY_MTU
) -> dict[str, str]:
    return {}


def _vxlan_scripts(
    topology: Topology, addresses: Addresses, mtu: int = UNDERLAY_MTU
) -> dict[str, str]:
    members = topology.member_nodes()
    scripts = {}
    for node in members:
        peers = {
            addresses.pod_subnets[peer]: addresses.node_ip(peer) for peer in members if peer != node
        }
        scripts[node] = vxlan.vxlan_script(
            addresses.node_ip(node), addresses.pod_subnets[node], peers, mtu
        )
    return scripts


def dial(
    topology: Topology, addresses: Addresses, node: str, peer: str
) -> tuple[IPv4Address, IPv4Address]:
    """(local, remote) underlay addresses for `node` to reach `peer`.

    On a network both share when there is one (the direct path); otherwise
    each node's first address, routed through a router node.
    """
    peer_networks = networks_of(topology, peer)
    shared = [n for n in networks_of(topology, node) if n in peer_networks]
    if shared:
        return addresses.node_ip(node, shared[0]), addresses.node_ip(peer, shared[0])
    return addresses.node_ip(node), addresses.node_ip(peer)


def _host_gw_scripts(
    topology: Topology, addresses: Addresses, mtu: int = UNDERLAY_MTU
) -> dict[str, str]:
    members = topology.member_nodes()
    return {
        node: hostgw.host_gw_script(
            {
                addresses.pod_subnets[peer]: dial(topology, addresses, node, peer)[1]
                for peer in members
                if peer != node
            }
        )
        for node in members
    }


def udp_peers(topology: Topology, addresses: Addresses, node: str) -> list[udp.UdpPeer]:
    """The tunnels of `node`: one per other cluster node."""
    members = topology.member_nodes()
    peers = []
    for index, peer in enumerate(members):
        if peer != node:
            local, remote = dial(topology, addresses, node, peer)
            peers.append(
                udp.UdpPeer(udp.device_name(index), addresses.pod_subnets[peer], remote, local)
            )
    return peers


def _udp_scripts(
    topology: Topology, addresses: Addresses, mtu: int = UNDERLAY_MTU
) -> dict[str, str]:
    return {
        node: udp.udp_script(addresses.pod_subnets[node], udp_peers(topology, addresses, node), mtu)
        for node in topology.member_nodes()
    }


def bgp_speakers(topology: Topology) -> list[str]:
    """Nodes that run BIRD: the cluster nodes, and the routers between segments.

    Routers learn the pod subnets (announcing none), as an L3 fabric's
    top-of-rack routers do; without them pod packets could not cross a router.
    """
    return topology.member_nodes() + routers(topology)


def bgp_node(topology: Topology, addresses: Addresses, node: str) -> bgp.BgpNode:
    """BIRD's view of `node`: full mesh, or sessions to/from the route reflectors."""
    settings = topology.cluster.bgp
    reflectors = set(settings.route_reflectors)
    speakers = bgp_speakers(topology)
    if not reflectors or node in reflectors:
        peers = [p for p in speakers if p != node]  # a reflector: also every client
    else:
        peers = [p for p in speakers if p in reflectors]
    dialled = {peer: dial(topology, addresses, node, peer) for peer in peers}
    return bgp.BgpNode(
        node=node,
        router_id=addresses.node_ip(node),
        asn=settings.asn,
        pod_subnet=addresses.pod_subnets.get(node),
        pod_cidr=topology.cluster.pod_cidr,
        peers=tuple(
            bgp.BgpPeer(
                peer,
                address=dialled[peer][1],
                local=dialled[peer][0],
                rr_client=node in reflectors and peer not in reflectors,
            )
            for peer in peers
        ),
        hold_time=settings.hold_time,
        keepalive=settings.keepalive,
        reflector=node in reflectors,
    )


def _bgp_scripts(
    topology: Topology, addresses: Addresses, mtu: int = UNDERLAY_MTU
) -> dict[str, str]:
    return {
        node: bgp.start_script(bgp_node(topology, addresses, node))
        for node in bgp_speakers(topology)
    }


BackendPlanner = Callable[[Topology, Addresses, int], dict[str, str]]

PLANNERS: dict[str, BackendPlanner] = {
    "none": _none_scripts,
    "vxlan": _vxlan_scripts,
    "host-gw": _host_gw_scripts,
    "udp": _udp_scripts,
    "bgp": _bgp_scripts,
}


def backend_scripts(
    topology: Topology, addresses: Addresses, underlay_mtu: int = UNDERLAY_MTU
) -> dict[str, str]:
    """Per cluster node, the script that wires it into the pod network."""
    return PLANNERS[topology.cluster.backend](topology, addresses, underlay_mtu)


def needed_features(topology: Topology) -> list[tuple[str, str]]:
    """(kernel or engine feature, what needs it) for the topology's pod network.

    What the topology itself allows (host-gw needs adjacent nodes...) is the
    validator's job; this names what the host must have.
    """
    backend = topology.cluster.backend
    needs = [(feature, f"backend {backend}") for feature in KERNEL_NEEDS[backend]]
    drivers = {name: network.driver for name, network in topology.networks.items()}
    needs += [("macvlan", f"networks.{n}.driver") for n, d in drivers.items() if d == "macvlan"]
    # Docker's isolation rules only stand on its bridges: a macvlan underlay has none.
    if "bridge" not in drivers.values():
        return needs
    if backend in UNENCAPSULATED:
        needs.append(("l2-underlay", f"backend {backend}"))
    elif routers(topology):
        needs.append(("l2-underlay", "a routed underlay (router nodes)"))
    return needs


def underlay_scripts(topology: Topology, addresses: Addresses) -> dict[str, str]:
    """Routes to the underlay networks a node is not on, through a router node.

    A route named in the topology wins; otherwise the first router that shares
    a network with the node and is on the destination network is used.
    """
    forwarders = routers(topology)
    scripts: dict[str, str] = {}
    for node, spec in topology.nodes.items():
        own = networks_of(topology, node)
        lines = []
        for network, subnet in addresses.underlay_subnets.items():
            if network in own:
                continue
            router = spec.routes.get(network) or next(
                (
                    r
                    for r in forwarders
                    if network in networks_of(topology, r)
                    and set(own) & set(networks_of(topology, r))
                ),
                None,
            )
            if router is None:
                continue
            gateway = dial(topology, addresses, node, router)[1]
            lines.append(f"ip route replace {subnet} via {gateway}")
        if lines:
            scripts[node] = script(lines)
    return scripts
