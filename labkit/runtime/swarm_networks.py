"""The Swarm runtime's underlay networks: an attachable, internal overlay made
once on a manager (every host sees the same one), or, for the networks that need
true L2 (VRRP), a macvlan network on each host on a shared interface."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from labkit.errors import LabkitError
from labkit.runtime.docker import DockerRuntime
from labkit.runtime.fleet import on_all
from labkit.runtime.network_spec import NetworkSpec


def create_overlay(manager: DockerRuntime, spec: NetworkSpec) -> None:
    """The overlay of `spec`, created on `manager` with the planned subnet."""
    # Swarm gives each host that attaches an address of its own (the network's
    # load balancer): from the top of the subnet, away from the planned node IPs.
    subnet = spec.subnet
    dynamic = list(subnet.subnets(new_prefix=min(subnet.prefixlen + 3, 30)))[-1]
    overlay = replace(spec, ip_range=dynamic)
    manager.client.networks.create(
        spec.name, driver="overlay", attachable=True, **overlay.create_args()
    )


def free_l2_parent(manager: DockerRuntime, parents: Sequence[str]) -> str:
    """A shared interface no other macvlan network uses (the engine allows one per parent)."""
    used = {
        (item.get("Options") or {}).get("parent")
        for item in manager.client.api.networks(filters={"driver": "macvlan"})
    }
    free = [parent for parent in parents if parent not in used]
    if not free:
        listed = ", ".join(parents) or "none"
        raise LabkitError(
            f"every shared L2 interface of the hosts file is taken by another lab ({listed}): "
            "take one down, or list more under `l2: {parents: [...]}`"
        )
    return free[0]


def create_macvlan(hosts: Mapping[str, DockerRuntime], spec: NetworkSpec, parent: str) -> None:
    """One macvlan network per host on the shared interface (static IPs: no IPAM clash).

    Not `internal`: an internal macvlan has no parent, so it would not cross
    hosts; it is opt-in (the hosts file's `l2:`) for that reason.
    """
    macvlan = replace(spec, internal=False, options={"parent": parent})
    name = spec.name

    def create(_: str, runtime: DockerRuntime) -> None:
        runtime.client.networks.create(name, driver="macvlan", **macvlan.create_args())

    _, failures = on_all(hosts, create)
    if failures:
        listed = "; ".join(f"{host}: {why}" for host, why in failures.items())
        hint = (
            " (set `l2: {vlans: true}` for several labs at once)"
            if "already using" in listed
            else ""
        )
        raise LabkitError(f"cannot make the L2 network {name} on {parent}: {listed}{hint}")
