"""Which links a topology impairs, and the kernel features that takes. Pure.

A link is a node's interface on one underlay network. Its impairment is the
node's own `impair` for that network over the network's `impair`, setting by
setting (see `Impairment` in the model).
"""

from __future__ import annotations

from collections.abc import Callable

from labkit.errors import FeatureMissing
from labkit.topology.model import Impairment, Topology
from labkit.topology.networks import networks_of

Link = tuple[str, str]  # (node, network)
Path = tuple[str | int, ...]


def link_impairments(topology: Topology) -> dict[Link, Impairment]:
    """Every impaired link, in file order of nodes and their networks."""
    result: dict[Link, Impairment] = {}
    for node_name, node in topology.nodes.items():
        for network in networks_of(topology, node_name):
            if network not in topology.networks:
                continue  # check_networks says so
            own = node.impair.get(network)
            base = topology.networks[network].impair
            effective = own.over(base) if own else base
            if effective is not None and effective.model_dump(exclude_none=True):
                result[(node_name, network)] = effective
    return result


def feature_of(impairment: Impairment) -> str:
    """The qdisc a link's impairment takes: netem for delay/jitter/loss, else tbf."""
    return "netem" if impairment.needs_netem else "tbf"


def impairment_uses(topology: Topology) -> dict[str, list[Path]]:
    """feature -> where in the file it is asked for (the impair settings that need it)."""
    uses: dict[str, list[Path]] = {}
    for (node, network), impairment in link_impairments(topology).items():
        feature = feature_of(impairment)
        own = topology.nodes[node].impair.get(network)
        set_by: list[Path] = []
        for setting in ("delay", "jitter", "loss") if feature == "netem" else ("rate",):
            if own is not None and getattr(own, setting) is not None:
                set_by.append(("nodes", node, "impair", network, setting))
            elif getattr(impairment, setting) is not None:
                set_by.append(("networks", network, "impair", setting))
        found = uses.setdefault(feature, [])
        found += [path for path in set_by if path not in found]
    return uses


def impairment_features(topology: Topology) -> set[str]:
    """The kernel features (`labkit.runtime.features` names) the impairments need."""
    return set(impairment_uses(topology))


WHAT_NEEDS = {"netem": "delay, jitter and loss", "tbf": "a rate alone"}


def refuse_missing_features(
    topology: Topology, has: Callable[[str], bool], reason: Callable[[str], str]
) -> None:
    """Raise FeatureMissing, naming each setting that asks for it, when the host
    lacks a qdisc the impairments need. Call it before anything is created, with
    `labkit.runtime.features.has` and `missing_reason`."""
    lines = []
    for feature, paths in impairment_uses(topology).items():
        if has(feature):
            continue
        where = ", ".join(".".join(map(str, path)) for path in paths)
        lines.append(
            f"{WHAT_NEEDS[feature]} need the {feature} qdisc, but {reason(feature)}; asked for by {where}"
        )
    if lines:
        raise FeatureMissing(f"topology {topology.name!r}: " + "; ".join(lines))
