"""Backends join the nodes' pod subnets into one flat network.

`backend_scripts` gives each cluster node the script that builds its part.
"""

from __future__ import annotations

from collections.abc import Callable

from labkit.dataplane import vxlan
from labkit.topology.addressing import Addresses
from labkit.topology.model import Topology

UNDERLAY_MTU = 1500

# Bytes each backend's encapsulation takes from the underlay MTU.
OVERHEAD = {"none": 0, "vxlan": vxlan.OVERHEAD, "host-gw": 0, "udp": 28, "bgp": 0}


def pod_mtu(topology: Topology) -> int:
    return UNDERLAY_MTU - OVERHEAD[topology.cluster.backend]


def _none_scripts(topology: Topology, addresses: Addresses) -> dict[str, str]:
    return {}


def _vxlan_scripts(topology: Topology, addresses: Addresses) -> dict[str, str]:
    members = topology.member_nodes()
    scripts = {}
    for node in members:
        peers = {
            addresses.pod_subnets[peer]: addresses.node_ip(peer)
            for peer in members
            if peer != node
        }
        scripts[node] = vxlan.vxlan_script(
            addresses.node_ip(node), addresses.pod_subnets[node], peers, UNDERLAY_MTU
        )
    return scripts


BackendPlanner = Callable[[Topology, Addresses], dict[str, str]]

PLANNERS: dict[str, BackendPlanner] = {
    "none": _none_scripts,
    "vxlan": _vxlan_scripts,
}


def backend_scripts(topology: Topology, addresses: Addresses) -> dict[str, str]:
    """Per cluster node, the script that wires it into the pod network."""
    planner = PLANNERS.get(topology.cluster.backend)
    if planner is None:
        from labkit.errors import FeatureMissing

        raise FeatureMissing(f"backend {topology.cluster.backend!r} is not implemented yet")
    return planner(topology, addresses)


def check_backend(topology: Topology) -> None:
    """Raise before anything is created when the backend cannot run here."""
    if topology.cluster.backend not in PLANNERS:
        from labkit.errors import FeatureMissing

        raise FeatureMissing(f"backend {topology.cluster.backend!r} is not implemented yet")


def underlay_scripts(topology: Topology, addresses: Addresses) -> dict[str, str]:
    """Routes to the underlay networks a node is not on, through a router node.

    A route named in the topology wins; otherwise the first router that shares
    a network with the node and is on the destination network is used.
    """
    from labkit.dataplane.script import script
    from labkit.topology.validate import networks_of

    routers = [name for name, node in topology.nodes.items() if "router" in node.roles]
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
                    for r in routers
                    if network in networks_of(topology, r)
                    and set(own) & set(networks_of(topology, r))
                ),
                None,
            )
            if router is None:
                continue
            shared = next(n for n in own if n in networks_of(topology, router))
            lines.append(f"ip route replace {subnet} via {addresses.node_ips[router][shared]}")
        if lines:
            scripts[node] = script(lines)
    return scripts
