"""Network policy selection: which pods a policy isolates, and what each isolated
pod may send to or receive from (peers and ports), as Kubernetes defines it.

Pure: topology and pod IPs in, allows out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, collapse_addresses

from labkit.topology.model import (
    IpBlock,
    LabelSelector,
    NetworkPolicy,
    PolicyPeer,
    PolicyPort,
    Topology,
)
from labkit.topology.selectors import selector_matches

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace, as Kubernetes does


@dataclass(frozen=True)
class PodView:
    """What policy needs to know of one pod."""

    name: str
    namespace: str
    node: str
    ip: IPv4Address
    labels: Mapping[str, str]
    named_ports: Mapping[tuple[str, str], int]  # (port name, protocol) -> number


@dataclass(frozen=True)
class Allow:
    """One allowed (peer, port) of a pod, in one direction; None means any."""

    peer: str | None  # an address match without its -s/-d: "10.244.1.2/32", "! 10.244.0.0/16"
    protocol: str | None  # "tcp" | "udp"
    ports: str | None  # "80" | "80:90"
    why: str  # the policy (or namespace isolation) that allows it


# -- selection ----------------------------------------------------------------------


def known_namespaces(topology: Topology) -> dict[str, dict[str, str]]:
    """Every namespace (declared, or used by a pod) with its labels, the implied one added."""
    names = list(topology.namespaces) + [p.namespace for p in topology.pods.values()]
    result: dict[str, dict[str, str]] = {}
    for name in names:
        declared = topology.namespaces.get(name)
        labels = dict(declared.labels) if declared else {}
        result[name] = {**labels, NAMESPACE_NAME_LABEL: name}
    return result


def pod_views(topology: Topology, pod_ips: Mapping[str, IPv4Address]) -> list[PodView]:
    views = []
    for name, pod in topology.pods.items():
        # hostNetwork pods are the node as far as policy goes (Kubernetes selects none).
        if name not in pod_ips or pod.host_network:
            continue
        named: dict[tuple[str, str], int] = {
            (p.name, p.protocol): p.port for p in pod.ports if p.name
        }
        views.append(PodView(name, pod.namespace, pod.node, pod_ips[name], pod.labels, named))
    return views


def selects(policy: NetworkPolicy, pod: PodView) -> bool:
    return policy.namespace == pod.namespace and selector_matches(policy.pod_selector, pod.labels)


def peer_pods(
    policy: NetworkPolicy,
    peer: PolicyPeer,
    pods: Sequence[PodView],
    namespaces: Mapping[str, dict[str, str]],
) -> list[PodView]:
    """The pods a selector peer stands for (a pod selector alone: the policy's namespace)."""
    if peer.namespace_selector is None:
        in_scope = {policy.namespace}
    else:
        in_scope = {
            name
            for name, labels in namespaces.items()
            if selector_matches(peer.namespace_selector, labels)
        }
    pod_selector = peer.pod_selector or LabelSelector()
    return [p for p in pods if p.namespace in in_scope and selector_matches(pod_selector, p.labels)]


def parse_cidr(text: str) -> IPv4Network | None:
    """A CIDR as Kubernetes accepts it (host bits may be set), or None."""
    try:
        return IPv4Network(text.strip(), strict=False)
    except ValueError:
        return None


def block_networks(block: IpBlock) -> list[IPv4Network]:
    """The block minus its exceptions, as the fewest CIDRs."""
    whole = parse_cidr(block.cidr)
    if whole is None:
        return []
    remaining = [whole]
    for text in block.except_:
        hole = parse_cidr(text)
        if hole is not None:
            remaining = [piece for net in remaining for piece in _without(net, hole)]
    return sorted(collapse_addresses(remaining))


def _without(net: IPv4Network, hole: IPv4Network) -> list[IPv4Network]:
    if hole.supernet_of(net):
        return []
    return list(net.address_exclude(hole)) if net.supernet_of(hole) else [net]


# -- allows ----------------------------------------------------------------------------


def _port_matches(
    port: PolicyPort, named_ports: Mapping[tuple[str, str], int]
) -> tuple[str, str | None] | None:
    """(protocol, port spec) of one policy port against a pod's named ports; None: unresolved."""
    protocol = port.protocol.lower()
    if port.port is None:
        return protocol, None
    if isinstance(port.port, str):
        number = named_ports.get((port.port, port.protocol))
        return (protocol, str(number)) if number is not None else None
    if port.end_port is not None and port.end_port > port.port:
        return protocol, f"{port.port}:{port.end_port}"
    return protocol, str(port.port)


def _rule_allows(
    peers: list[tuple[str | None, PodView | None]],
    ports: list[PolicyPort],
    named_ports_of: Mapping[tuple[str, str], int] | None,
    why: str,
) -> list[Allow]:
    """The cross product of a rule's peers and ports.

    A named port resolves against `named_ports_of` (ingress: the selected pod)
    or, when that is None, against each peer pod (egress: the destination).
    """
    allows = []
    for address, pod in peers:
        if not ports:
            allows.append(Allow(address, None, None, why))
            continue
        for port in ports:
            named = (
                named_ports_of if named_ports_of is not None else (pod.named_ports if pod else {})
            )
            resolved = _port_matches(port, named)
            if resolved is not None:
                allows.append(Allow(address, resolved[0], resolved[1], why))
    return allows


def _peers(
    policy: NetworkPolicy,
    peers: list[PolicyPeer],
    pods: Sequence[PodView],
    namespaces: Mapping[str, dict[str, str]],
) -> list[tuple[str | None, PodView | None]]:
    """Addresses of a rule's peers; an empty list of peers means any address."""
    if not peers:
        return [(None, None)]
    result: list[tuple[str | None, PodView | None]] = []
    for peer in peers:
        if peer.ip_block is not None:
            result += [(str(net), None) for net in block_networks(peer.ip_block)]
        else:
            result += [(f"{p.ip}/32", p) for p in peer_pods(policy, peer, pods, namespaces)]
    return result


def _isolation_allows(
    pod: PodView, pods: Sequence[PodView], topology: Topology, node_addresses: Iterable[IPv4Address]
) -> list[Allow]:
    """An isolated namespace: its own pods, the nodes, and everything outside the pod network."""
    why = f"namespace {pod.namespace} isolated"
    allows = [Allow(f"{p.ip}/32", None, None, why) for p in pods if p.namespace == pod.namespace]
    allows += [Allow(f"{address}/32", None, None, why) for address in node_addresses]
    allows.append(Allow(f"! {topology.cluster.pod_cidr}", None, None, why))
    return allows


def pod_allows(
    pod: PodView,
    direction: str,
    topology: Topology,
    pods: Sequence[PodView],
    namespaces: Mapping[str, dict[str, str]],
    node_addresses: Iterable[IPv4Address] = (),
) -> list[Allow] | None:
    """What may reach (Ingress) or leave (Egress) `pod`; None when it is not isolated."""
    isolated = False
    allows: list[Allow] = []
    for name, policy in topology.policies.items():
        if direction not in policy.types() or not selects(policy, pod):
            continue
        isolated = True
        why = f"policy {name}"
        if direction == "Ingress":
            for rule in policy.ingress:
                peers = _peers(policy, rule.from_, pods, namespaces)
                allows += _rule_allows(peers, rule.ports, pod.named_ports, why)
        else:
            for egress in policy.egress:
                peers = _peers(policy, egress.to, pods, namespaces)
                named = [p for p in egress.ports if isinstance(p.port, str)]
                numbered = [p for p in egress.ports if not isinstance(p.port, str)]
                if numbered or not egress.ports:
                    allows += _rule_allows(peers, numbered, None, why)
                if named:
                    # A named port resolves on the destination pod; "anywhere" means every pod.
                    pod_peers: list[tuple[str | None, PodView | None]] = (
                        peers if peers != [(None, None)] else [(f"{p.ip}/32", p) for p in pods]
                    )
                    allows += _rule_allows(pod_peers, named, None, why)
    namespace = topology.namespaces.get(pod.namespace)
    if namespace is not None and namespace.isolated:
        isolated = True
        allows += _isolation_allows(pod, pods, topology, node_addresses)
    return list(dict.fromkeys(allows)) if isolated else None


# -- what `labkit status` says ---------------------------------------------------------


def warnings(topology: Topology) -> list[str]:
    """Policies that match nothing because they name a namespace nobody has (allowed, but said)."""
    namespaces = known_namespaces(topology)
    found = []
    for name, policy in topology.policies.items():
        if policy.namespace not in namespaces:
            found.append(
                f"policy {name}: namespace {policy.namespace!r} is unknown, it selects no pod"
            )
        peers = [p for r in policy.ingress for p in r.from_] + [
            p for r in policy.egress for p in r.to
        ]
        for peer in peers:
            selector = peer.namespace_selector
            if selector is not None and not any(
                selector_matches(selector, labels) for labels in namespaces.values()
            ):
                shown = selector.model_dump(exclude_defaults=True) or "{}"
                found.append(
                    f"policy {name}: namespace_selector {shown} matches no known namespace"
                )
    return found
