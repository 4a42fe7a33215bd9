"""LoadBalancer addresses, decided: the pool's addresses and one per service. Pure.

Like MetalLB's IPAddressPool: CIDRs or `first-last` ranges. Allocation is
sticky as for ClusterIPs: pinned (`load_balancer_ip`) wins, then what the
running lab already handed out, then the lowest free address of the pool.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError

from labkit.errors import LabkitError
from labkit.topology.model import LoadBalancerPool, Topology


def parse_block(text: str) -> list[IPv4Address]:
    """One pool entry's addresses; ValueError with the reason when it is malformed."""
    text = text.strip()
    try:
        if "-" in text:
            first, last = (IPv4Address(part.strip()) for part in text.split("-", 1))
            if last < first:
                raise ValueError(f"range {text!r} ends before it starts")
            return [IPv4Address(n) for n in range(int(first), int(last) + 1)]
        network = IPv4Network(text, strict=True)
    except (AddressValueError, NetmaskValueError) as error:
        raise ValueError(f"{text!r} is neither a CIDR nor a first-last range ({error})") from None
    # A /32 is one address; a wider block keeps its network and broadcast addresses
    # out, as MetalLB's avoidBuggyIPs does.
    return list(network.hosts()) if network.prefixlen < 31 else list(network)


def pool_addresses(pool: LoadBalancerPool) -> Iterator[IPv4Address]:
    """The pool's addresses, in order, each once."""
    seen: set[IPv4Address] = set()
    for block in pool.addresses:
        for address in parse_block(block):
            if address not in seen:
                seen.add(address)
                yield address


def allocate_lb_ips(
    topology: Topology, existing: Mapping[str, IPv4Address] | None = None
) -> dict[str, IPv4Address]:
    """A LoadBalancer address per `type: LoadBalancer` service: pinned, kept, lowest free."""
    wanted = [n for n, s in topology.services.items() if s.type == "LoadBalancer"]
    pool = topology.cluster.load_balancer
    if not wanted:
        return {}
    if pool is None:
        raise LabkitError("LoadBalancer services need cluster.load_balancer (an address pool)")
    existing = existing or {}
    addresses = list(pool_addresses(pool))
    members = set(addresses)
    result: dict[str, IPv4Address] = {}
    for name in wanted:
        pinned = topology.services[name].load_balancer_ip
        if pinned is not None:
            result[name] = pinned
    taken = set(result.values())
    for name in wanted:
        kept = existing.get(name)
        if name not in result and kept in members and kept not in taken:
            result[name] = kept
            taken.add(kept)
    free = (a for a in addresses if a not in taken)
    for name in wanted:
        if name not in result:
            chosen = next(free, None)
            if chosen is None:
                raise LabkitError(f"the load balancer pool ({', '.join(pool.addresses)}) is full")
            result[name] = chosen
    return {name: result[name] for name in wanted}
