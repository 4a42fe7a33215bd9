"""The impairment plan: per node and underlay interface, the qdisc to set. Pure.

The interface is the one holding the node's address on that network (Docker
names them), found on the node when the script runs, as the backends do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address

from labkit.dataplane.script import script
from labkit.dataplane.shaping import netem_qdisc, tbf_qdisc
from labkit.dataplane.vxlan import underlay_device
from labkit.topology.addressing import Addresses
from labkit.topology.impairments import feature_of, link_impairments
from labkit.topology.model import Impairment, Topology


@dataclass(frozen=True)
class LinkShaping:
    """One impaired link: what `status` shows and what `up` sets."""

    node: str
    network: str
    address: IPv4Address  # the node's address on the network: names the interface
    impairment: Impairment
    kind: str  # "tbf" | "netem": the qdisc, and the kernel feature it needs
    qdisc: str  # the `tc qdisc replace dev IF root ...` arguments


def qdisc_for(impairment: Impairment) -> str:
    """tbf for a rate alone; netem for delay/jitter/loss, the rate folded into it."""
    if not impairment.needs_netem:
        assert impairment.rate, "an empty impairment shapes nothing"
        return tbf_qdisc(impairment.rate)
    return netem_qdisc(impairment.delay, impairment.jitter, impairment.loss, impairment.rate)


def plan_impairments(topology: Topology, addresses: Addresses) -> dict[str, list[LinkShaping]]:
    """node -> its impaired links, in file order; nodes with none are left out."""
    plan: dict[str, list[LinkShaping]] = {}
    for (node, network), impairment in link_impairments(topology).items():
        plan.setdefault(node, []).append(
            LinkShaping(
                node=node,
                network=network,
                address=addresses.node_ip(node, network),
                impairment=impairment,
                kind=feature_of(impairment),
                qdisc=qdisc_for(impairment),
            )
        )
    return plan


def set_qdisc_command(address: IPv4Address, qdisc: str | None) -> str:
    """Set the root qdisc of the interface holding `address`; None: back to the default."""
    device = underlay_device(address)
    if qdisc is None:
        return f"tc qdisc del dev {device} root 2>/dev/null || true"
    return f"tc qdisc replace dev {device} root {qdisc}"


def shaping_script(links: Iterable[LinkShaping]) -> str:
    """One node's script: set each impaired link's qdisc (idempotent: `replace`)."""
    return script(set_qdisc_command(link.address, link.qdisc) for link in links)


def topology_qdisc(topology: Topology, node: str, network: str) -> str | None:
    """The qdisc the topology gives a link, None for none: what reverting a fault restores."""
    impairment = link_impairments(topology).get((node, network))
    return qdisc_for(impairment) if impairment is not None else None


def changed_qdisc(topology: Topology, node: str, network: str, change: Impairment) -> str:
    """A fault's settings over the link's own from the topology (`labkit fault`)."""
    return qdisc_for(change.over(link_impairments(topology).get((node, network))))
