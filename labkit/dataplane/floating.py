"""Floating IPs: an address outside the pod network bound to a pod, L3-proxied.

The node that runs the pod owns the address: it holds it on its underlay
interface (so its own processes can dial it too) and DNATs it to the pod's
IP (nat PREROUTING and OUTPUT, chain LABKIT-FLOATING). Every other node gets
a /32 route to it through the owner (or through the router towards the
owner), the way a cloud's route table or a BGP announcement carries a
floating IP. A route, not ARP: when the pod moves the next hop changes at
once on every node, with no neighbour cache holding the old owner's MAC.

Replies leave through the owner (the pod's default route is the owner's
bridge), where conntrack turns the pod's IP back into the floating IP.

Pure: topology and addresses in, one script per node out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address

from labkit.dataplane.script import script
from labkit.dataplane.vxlan import underlay_device
from labkit.topology.addressing import Addresses
from labkit.topology.model import Topology

CHAIN = "LABKIT-FLOATING"


@dataclass(frozen=True)
class Binding:
    """A floating IP and where it leads now (no pod: unbound)."""

    name: str
    ip: IPv4Address
    pod: str
    pod_ip: IPv4Address | None
    owner: str | None  # the node running the pod


def bindings(topology: Topology, pod_ips: Mapping[str, IPv4Address]) -> list[Binding]:
    result = []
    for name, floating in topology.floating_ips.items():
        pod = topology.pods.get(floating.pod)
        bound = pod is not None and floating.pod in pod_ips
        result.append(
            Binding(
                name,
                floating.ip,
                floating.pod,
                pod_ips[floating.pod] if bound else None,
                pod.node if bound and pod is not None else None,
            )
        )
    return result


def _next_hop(owner_ip: IPv4Address) -> str:
    """Shell: the gateway towards the owner (a router's address), or the owner itself."""
    return (
        f"$(ip -o route get {owner_ip} 2>/dev/null | "
        f"awk '{{for (i = 1; i < NF; i++) if ($i == \"via\") {{print $(i + 1); exit}}}}')"
    )


def node_script(node: str, topology: Topology, addresses: Addresses) -> str:
    """One node's part: DNAT what it owns, hold it on the underlay, route the rest."""
    every = bindings(topology, addresses.pod_ips)
    own = [b for b in every if b.owner == node]
    nat = ["*nat", f":{CHAIN} - [0:0]"]
    nat += [
        f'-A {CHAIN} -d {b.ip}/32 -m comment --comment "floating {b.name} -> pod {b.pod}" '
        f"-j DNAT --to-destination {b.pod_ip}"
        for b in own
    ]
    nat.append("COMMIT")
    lines = [
        "iptables-restore --noflush <<'LABKIT_EOF'\n" + "\n".join(nat) + "\nLABKIT_EOF",
        f"iptables -t nat -C PREROUTING -j {CHAIN} 2>/dev/null || iptables -t nat -I PREROUTING 1 -j {CHAIN}",
        f"iptables -t nat -C OUTPUT -j {CHAIN} 2>/dev/null || iptables -t nat -I OUTPUT 1 -j {CHAIN}",
    ]
    device = underlay_device(addresses.node_ip(node))
    for binding in every:
        ip = binding.ip
        # Whatever this node did for the address before (owned it, routed it) goes first.
        lines.append(
            f"for dev in $(ip -o -4 addr show to {ip}/32 | awk '{{print $2}}'); do "
            f"ip addr del {ip}/32 dev $dev; done"
        )
        lines.append(f"ip route del {ip}/32 2>/dev/null || true")
        if binding.owner == node:
            lines.append(f"ip addr add {ip}/32 dev {device}")
        elif binding.owner is not None:
            owner_ip = addresses.node_ip(binding.owner)
            hop = _next_hop(owner_ip)
            lines.append(f"gw={hop}; ip route replace {ip}/32 via ${{gw:-{owner_ip}}}")
    return script(lines)


def plan(topology: Topology, addresses: Addresses) -> dict[str, str]:
    """Per node (routers and external clients too: they route to the owner), its script."""
    return {node: node_script(node, topology, addresses) for node in topology.nodes}
