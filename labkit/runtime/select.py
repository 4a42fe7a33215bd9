"""Which runtime a lab runs on: this machine's engine, or the hosts of a hosts file.

`runtime_for(hosts_file, topology)` decides everything a multi-host lab can be
refused for before anything is created on any host: the hosts file itself,
pins to unknown hosts (file:line), hosts that are not one swarm, and networks
that carry VRRP across hosts that share no L2 segment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from labkit.errors import Problem, TopologyError, UsageError
from labkit.runtime.base import Runtime
from labkit.runtime.docker import DockerRuntime, engine_available

if TYPE_CHECKING:  # a one-host lab (and `labkit down`) loads no Swarm or hosts-file code
    from labkit.topology.inventory import Inventory
    from labkit.topology.model import Topology

HOSTS_ENV = "LABKIT_HOSTS"
NO_L2 = (
    "a Swarm overlay carries only the addresses it assigned: a VIP and multicast "
    "do not reach the other hosts"
)


class NeedsL2(TopologyError):
    """A network carries an L2-only feature across hosts that offer no shared L2 (exit 2)."""


def hosts_file(option: str | None = None) -> str | None:
    """The hosts file asked for: the option, else $LABKIT_HOSTS, else none (one host)."""
    return option or os.environ.get(HOSTS_ENV) or None


def l2_needs(topology: Topology) -> dict[str, str]:
    """Network -> the feature on it that needs true L2 (pure).

    Floating IPs are routed (a /32 via the owner), not ARPed, so they need none.
    """
    if topology.vrrp is None:
        return {}
    return {topology.vrrp.network: f"VRRP (vip {topology.vrrp.vip})"}


def l2_problems(
    topology: Topology, placement: Mapping[str, str], inventory: Inventory
) -> list[Problem]:
    """Networks that need L2 and span hosts, where the hosts file offers none (pure)."""
    from labkit.topology.networks import networks_of

    if inventory.l2 is not None:
        return []
    problems = []
    for network, feature in l2_needs(topology).items():
        on = sorted({placement[n] for n in topology.nodes if network in networks_of(topology, n)})
        if len(on) > 1:
            problems.append(
                Problem(
                    ("vrrp", "network"),
                    f"network {network!r} carries {feature} across hosts {', '.join(on)}: {NO_L2}. "
                    "Where the hosts share a segment, add `l2: {parent: IFACE}` to the hosts file "
                    "(see `labkit hosts check`), or pin that network's nodes to one host",
                )
            )
    return problems


def _located(problems: list[Problem], file: str | None) -> list[Problem]:
    """The problems with file:line:col of their place in `file`."""
    from labkit.topology.loader import compose_text, where_of

    if not file or not Path(file).is_file():
        return problems
    try:
        _, marks = compose_text(Path(file).read_text(), file)
    except TopologyError:
        return problems
    return [Problem(p.path, p.message, where_of(marks, p.path)) for p in problems]


def placement_for(
    topology: Topology, inventory: Inventory, hosts: str, source: str | None
) -> dict[str, str]:
    from labkit.topology.inventory import place_nodes

    pins = {name: node.host for name, node in topology.nodes.items() if node.host}
    try:
        return place_nodes(
            list(topology.nodes), inventory.host_names, topology_pins=pins,
            inventory_pins=inventory.nodes, source=source or topology.name,
        )  # fmt: skip
    except TopologyError as error:
        topology_side = [p for p in error.problems if p.path[-1:] == ("host",)]
        inventory_side = [p for p in error.problems if p.path[-1:] != ("host",)]
        located = _located(topology_side, source) + _located(inventory_side, hosts)
        raise TopologyError(located, source or hosts) from None


def runtime_for(
    hosts: str | None,
    topology: Topology | None = None,
    *,
    source: str | None = None,
    local: DockerRuntime | None = None,
    placement: Mapping[str, str] | None = None,
) -> Runtime:
    """The runtime for a lab: `hosts` None -> this machine's engine; else a SwarmRuntime.

    With `topology`: placed and checked for L2; without (a running lab), `placement` is its own.

    Raises (exit 2, nothing created) when the lab cannot run on those hosts.
    """
    if not hosts:
        return local or DockerRuntime()
    from labkit.runtime.swarm import SwarmRuntime
    from labkit.topology.inventory import load_inventory

    inventory = load_inventory(hosts)
    placement = {**inventory.nodes, **(placement or {})}  # a running lab's own, when known
    l2 = set()
    if topology is not None:
        placement = placement_for(topology, inventory, hosts, source)
        problems = l2_problems(topology, placement, inventory)
        if problems:
            raise NeedsL2(_located(problems, source), source or topology.name)
        l2 = set(l2_needs(topology)) if inventory.l2 else set()
    if local is None and engine_available()[0]:
        local = DockerRuntime()  # the node image is built here, shipped to the hosts
    runtime = SwarmRuntime.from_inventory(
        inventory, placement, image_source=local, l2_networks=sorted(l2),
        l2_parents=inventory.l2.interfaces if inventory.l2 else (),
        hosts_file=str(Path(hosts).resolve()),
    )  # fmt: skip
    # Only before `up`: a running lab with a lost host must still attach and go down.
    not_one_swarm = runtime.swarm_problems() if topology is not None else []
    if not_one_swarm:
        listed = "\n  ".join(not_one_swarm)
        raise UsageError(
            f"hosts file {hosts}: these hosts are not one swarm:\n  {listed}\n"
            f"form one with `labkit hosts init {hosts}` (nothing was created)"
        )
    return runtime
