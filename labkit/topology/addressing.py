"""Address allocation: underlay subnets, node IPs, node pod subnets, pod IPs.

Pure: what the host already uses comes in as an argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from labkit.errors import LabkitError, Problem, TopologyError
from labkit.topology.model import Topology
from labkit.topology.networks import networks_of

# Where underlay subnets are picked from when the topology does not pin one.
UNDERLAY_POOL = IPv4Network("172.20.0.0/14")
UNDERLAY_PREFIX = 24
FIRST_NODE_HOST = 2  # .1 is the Docker network's gateway address


@dataclass
class Addresses:
    underlay_subnets: dict[str, IPv4Network]
    node_ips: dict[str, dict[str, IPv4Address]]  # node -> network -> address
    pod_subnets: dict[str, IPv4Network]  # member node -> its pod subnet
    pod_ips: dict[str, IPv4Address] = field(default_factory=dict)

    def node_ip(self, node: str, network: str | None = None) -> IPv4Address:
        """The node's address on `network`, or on its first network."""
        by_network = self.node_ips[node]
        return by_network[network] if network else next(iter(by_network.values()))

    def gateway(self, node: str) -> IPv4Address:
        """The pod gateway (the bridge's address) on a node."""
        return self.pod_subnets[node].network_address + 1


def pick_underlay_subnets(
    topology: Topology, taken: Iterable[IPv4Network]
) -> dict[str, IPv4Network]:
    """A subnet per network: pinned ones as given, others free on this host."""
    taken = list(taken)
    clashes = [
        Problem(
            ("networks", name, "subnet"), f"{net.subnet} is already used on this host ({other})"
        )
        for name, net in topology.networks.items()
        if net.subnet is not None
        for other in taken
        if net.subnet.overlaps(other)
    ]
    if clashes:  # a pinned subnet another lab or the host holds: refuse before creating anything
        raise TopologyError(clashes, topology.name)
    avoid = [*taken, topology.cluster.pod_cidr, topology.cluster.service_cidr]
    avoid += [net.subnet for net in topology.networks.values() if net.subnet]
    chosen: dict[str, IPv4Network] = {}
    candidates = UNDERLAY_POOL.subnets(new_prefix=UNDERLAY_PREFIX)
    for name, network in topology.networks.items():
        if network.subnet is not None:
            chosen[name] = network.subnet
            continue
        for candidate in candidates:
            if not any(candidate.overlaps(other) for other in avoid):
                chosen[name] = candidate
                avoid.append(candidate)
                break
        else:
            raise LabkitError(
                f"no free /{UNDERLAY_PREFIX} left in {UNDERLAY_POOL} for network {name!r}"
            )
    return chosen


def node_subnets(topology: Topology) -> dict[str, IPv4Network]:
    """Each cluster node's pod subnet, in file order, carved out of the pod CIDR."""
    cluster = topology.cluster
    blocks = cluster.pod_cidr.subnets(new_prefix=cluster.node_prefix)
    return dict(zip(topology.member_nodes(), blocks, strict=False))


def node_addresses(
    topology: Topology, subnets: Mapping[str, IPv4Network]
) -> dict[str, dict[str, IPv4Address]]:
    """Each node's address on each of its networks: .2, .3... in file order."""
    result: dict[str, dict[str, IPv4Address]] = {node: {} for node in topology.nodes}
    for network, subnet in subnets.items():
        on_network = [node for node in topology.nodes if network in networks_of(topology, node)]
        for index, node in enumerate(on_network):
            result[node][network] = subnet.network_address + FIRST_NODE_HOST + index
    return result


def allocate_pod_ip(subnet: IPv4Network, used: Iterable[IPv4Address]) -> IPv4Address:
    """The lowest free address after the gateway."""
    used_set = set(used)
    for address in subnet.hosts():
        if address == subnet.network_address + 1 or address in used_set:
            continue
        return address
    raise LabkitError(f"pod subnet {subnet} is full")


def choose_pod_ip(
    subnet: IPv4Network,
    used: Iterable[IPv4Address],
    *,
    pinned: IPv4Address | None = None,
    sticky: IPv4Address | str | None = None,
    reserved: Iterable[IPv4Address | str] = (),
) -> IPv4Address:
    """A new pod's IP: pinned; else its own from before (sticky) when free; else the
    lowest free address that no deleted pod may come back for (`reserved`), falling
    back to those only when nothing else is left."""
    used_set = set(used)
    if pinned is not None:
        return pinned
    if sticky is not None:
        own = IPv4Address(str(sticky))
        if own in subnet and own not in used_set and own != subnet.network_address + 1:
            return own
    held = {IPv4Address(str(address)) for address in reserved}
    try:
        return allocate_pod_ip(subnet, used_set | held)
    except LabkitError:
        return allocate_pod_ip(subnet, used_set)


def allocate_pod_ips(
    topology: Topology,
    pod_subnets: Mapping[str, IPv4Network],
    existing: Mapping[str, IPv4Address] | None = None,
) -> dict[str, IPv4Address]:
    """Pod IPs: pinned first, then sticky (kept from `existing`), then lowest free."""
    existing = existing or {}
    result: dict[str, IPv4Address] = {}
    for name, pod in topology.pods.items():
        if pod.ip is not None:
            result[name] = pod.ip

    for name, pod in topology.pods.items():
        subnet = pod_subnets[pod.node]
        if name in result or pod.host_network:
            continue
        kept = existing.get(name)
        if kept is not None and kept in subnet and kept not in result.values():
            result[name] = kept
    for name, pod in topology.pods.items():
        if name not in result and not pod.host_network:  # hostNetwork: plan_addresses
            result[name] = allocate_pod_ip(pod_subnets[pod.node], result.values())
    return result


def plan_addresses(
    topology: Topology,
    taken: Iterable[IPv4Network] = (),
    existing_pod_ips: Mapping[str, IPv4Address] | None = None,
) -> Addresses:
    underlay = pick_underlay_subnets(topology, taken)
    pod_subnets = node_subnets(topology)
    addresses = Addresses(
        underlay_subnets=underlay,
        node_ips=node_addresses(topology, underlay),
        pod_subnets=pod_subnets,
        pod_ips=allocate_pod_ips(topology, pod_subnets, existing_pod_ips),
    )
    for name, pod in topology.pods.items():
        if pod.host_network:  # hostNetwork: the pod's IP is its node's
            addresses.pod_ips[name] = addresses.node_ip(pod.node)
    return addresses
