"""Network policy: Kubernetes NetworkPolicy semantics -> an iptables-restore payload per node.

Each node enforces the policies of its own pods, where their traffic crosses
its filter FORWARD chain: routed traffic (to and from other nodes) and bridged
traffic between pods of the node (bridge-nf-call-iptables=1 sends it there).

    FORWARD -> LABKIT-POLICY (first rule, ahead of kube-proxy's ACCEPTs)
        ESTABLISHED,RELATED            -> RETURN    (stateful: replies pass)
        -s <pod ip>  (egress-isolated)  -> LABKIT-POL-EG-<pod>
        -d <pod ip>  (ingress-isolated) -> LABKIT-POL-IN-<pod>
    LABKIT-POL-EG/IN-<pod>: one RETURN per allowed (peer, port), then REJECT.

Allowed traffic RETURNs, so that the rest of FORWARD (kube-proxy's, the
portmap plugin's) still applies; denied traffic is rejected with ICMP
"administratively prohibited", so a denied client fails at once instead of
timing out (a truth table of denied paths then runs in seconds).

Conntrack entries outlive a policy change: a flow the old rules let through
would keep matching ESTABLISHED, and so would a "new" datagram that happens to
reuse its 5-tuple. After loading its rules a node therefore deletes the
entries of its pods' flows that the new rules deny (as Calico and Cilium clean
their own state), so the new policy holds for every packet that follows.

Traffic a node sends itself to its pods goes through OUTPUT and is never
filtered: Kubernetes allows a node to reach its own pods (kubelet probes).
Traffic from other nodes (their processes, e.g. an ingress controller) is
subject to the destination pod's ingress rules like any other source.

Pure: topology and pod IPs in, text out.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, collapse_addresses
from typing import Any

from labkit.dataplane.script import q, script
from labkit.topology.model import (
    IpBlock,
    LabelSelector,
    NetworkPolicy,
    PolicyPeer,
    PolicyPort,
    Topology,
    key_name,
)
from labkit.topology.selectors import selector_matches

POLICY_CHAIN = "LABKIT-POLICY"
POD_CHAIN_PREFIX = "LABKIT-POL-"
DENY = "REJECT --reject-with icmp-admin-prohibited"
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


# -- rendering ---------------------------------------------------------------------------


def pod_chain(pod: str, direction: str) -> str:
    """A stable chain name per pod and direction (iptables allows 28 characters)."""
    digest = hashlib.sha256(pod.encode()).hexdigest()[:10]
    return f"{POD_CHAIN_PREFIX}{'IN' if direction == 'Ingress' else 'EG'}-{digest}"


def _comment(text: str) -> str:
    return f'-m comment --comment "{text[:250]}"'


def allow_rule(chain: str, allow: Allow, direction: str) -> str:
    flag = "-s" if direction == "Ingress" else "-d"
    words = ["-A", chain]
    if allow.peer is not None:
        negated = allow.peer.startswith("! ")
        words += ["!", flag, allow.peer[2:]] if negated else [flag, allow.peer]
    if allow.protocol is not None:
        words += ["-p", allow.protocol]
        if allow.ports is not None:
            words += ["-m", allow.protocol, "--dport", allow.ports]
    words += [_comment(allow.why), "-j", "RETURN"]
    return " ".join(words)


# -- conntrack: flows the new rules deny -------------------------------------------------

# Per local pod IP and direction ("egress"/"ingress"), the allows as plain data
# [peer CIDR, negated, protocol or None, first port or None, last port or None];
# a direction that is absent is not isolated.
FlowRules = dict[str, dict[str, list[list[Any]]]]


def flow_rules(
    pods: Sequence[PodView], allows_of: Mapping[tuple[str, str], list[Allow]]
) -> FlowRules:
    """The data the node-side pruner decides with, from the allows it enforces."""
    rules: FlowRules = {}
    for pod in pods:
        for direction in ("Egress", "Ingress"):
            allows = allows_of.get((pod.name, direction))
            if allows is None:
                continue
            rows = []
            for allow in allows:
                negated = bool(allow.peer and allow.peer.startswith("! "))
                cidr = (allow.peer[2:] if negated else allow.peer) if allow.peer else "0.0.0.0/0"
                first, _, last = (allow.ports or "").partition(":")
                rows.append(
                    [cidr, negated, allow.protocol, int(first) if first else None,
                     int(last or first) if first else None]
                )  # fmt: skip
            rules.setdefault(str(pod.ip), {})[direction.lower()] = rows
    return rules


# The two functions below also run on the node (shipped by source): stdlib only.


def parse_conntrack_line(line: str) -> dict[str, Any] | None:
    """One `conntrack -L` line as the flow FORWARD saw: the original source, and
    the destination after DNAT (the reply's source); None for what is not a flow."""
    words = line.split()
    if len(words) < 2 or words[0] not in ("tcp", "udp", "sctp", "icmp"):
        return None
    seen: dict[str, list[str]] = {}
    for word in words:
        key, sign, value = word.partition("=")
        if sign:
            seen.setdefault(key, []).append(value)
    if len(seen.get("src", [])) < 2:
        return None
    ports = len(seen.get("sport", [])) >= 2
    return {
        "protocol": words[0],
        "state": words[3] if words[0] == "tcp" and "=" not in words[3] else "",
        "src": seen["src"][0],
        "orig_dst": seen["dst"][0],
        "dst": seen["src"][1],
        "sport": int(seen["sport"][0]) if ports else None,
        "orig_dport": int(seen["dport"][0]) if ports else None,
        "dport": int(seen["sport"][1]) if ports else None,
    }


def flow_denied(rules: dict[str, dict[str, list[list[Any]]]], flow: dict[str, Any]) -> bool:
    """Whether the node's rules (as `flow_rules` gives them) now reject `flow`,
    as iptables would: each isolated end needs one allow that matches."""
    from ipaddress import ip_address, ip_network

    def allowed(rows: list[list[Any]], peer: str) -> bool:
        for cidr, negated, protocol, first, last in rows:
            if (ip_address(peer) in ip_network(cidr)) == negated:
                continue
            if protocol is not None and protocol != flow["protocol"]:
                continue
            if first is not None and not (
                flow["dport"] is not None and first <= flow["dport"] <= last
            ):
                continue
            return True
        return False

    egress = rules.get(flow["src"], {}).get("egress")
    ingress = rules.get(flow["dst"], {}).get("ingress")
    return (egress is not None and not allowed(egress, flow["dst"])) or (
        ingress is not None and not allowed(ingress, flow["src"])
    )


# Entries that differ only in their source port share a verdict: one delete each.
# A TCP entry in TIME_WAIT or CLOSE is left alone: a new SYN on its tuple makes
# conntrack drop it and judge the packet as NEW, by the new rules.
_PRUNE_MAIN = """
import json, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
rules = json.loads(sys.argv[1])
listed = subprocess.run(["conntrack", "-L"], capture_output=True, text=True).stdout
doomed = {}
for line in listed.splitlines():
    flow = parse_conntrack_line(line)
    if flow is None or flow["state"] in ("TIME_WAIT", "CLOSE") or not flow_denied(rules, flow):
        continue
    command = ["conntrack", "-D", "-p", flow["protocol"], "--orig-src", flow["src"],
               "--orig-dst", flow["orig_dst"], "--reply-src", flow["dst"]]
    if flow["dport"] is not None:
        command += ["--orig-port-dst", str(flow["orig_dport"]), "--reply-port-src", str(flow["dport"])]
    doomed[tuple(command)] = command
with ThreadPoolExecutor(4) as pool:  # each delete walks the table: a few at once
    list(pool.map(lambda c: subprocess.run(c, capture_output=True), doomed.values()))
"""


def prune_program() -> str:
    """The node-side Python program that deletes the conntrack entries of denied flows."""
    functions = inspect.getsource(parse_conntrack_line) + "\n" + inspect.getsource(flow_denied)
    return "from typing import Any\n" + functions + _PRUNE_MAIN


@dataclass(frozen=True)
class NodePolicy:
    """One node's rules: the iptables-restore payload and the chains it owns."""

    payload: str
    chains: tuple[str, ...]
    rules: int
    flow_rules: FlowRules = field(default_factory=dict)


def render_node(
    node: str,
    topology: Topology,
    pods: Sequence[PodView],
    node_addresses: Iterable[IPv4Address] = (),
) -> NodePolicy:
    node_addresses = list(node_addresses)
    dispatch = [f"-A {POLICY_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"]
    bodies: dict[str, list[str]] = {}
    allows_of: dict[tuple[str, str], list[Allow]] = {}
    local = [p for p in pods if p.node == node]
    namespaces = known_namespaces(topology)
    for direction, flag in (("Egress", "-s"), ("Ingress", "-d")):
        for pod in local:
            allows = pod_allows(pod, direction, topology, pods, namespaces, node_addresses)
            if allows is None:
                continue
            allows_of[(pod.name, direction)] = allows
            chain = pod_chain(pod.name, direction)
            what = f"pod {pod.namespace}/{key_name(pod.name)} {direction.lower()}"
            dispatch.append(f"-A {POLICY_CHAIN} {flag} {pod.ip}/32 {_comment(what)} -j {chain}")
            bodies[chain] = [allow_rule(chain, allow, direction) for allow in allows]
            bodies[chain].append(f"-A {chain} {_comment(what + ' default deny')} -j {DENY}")
    lines = ["*filter", f":{POLICY_CHAIN} - [0:0]", *(f":{chain} - [0:0]" for chain in bodies)]
    lines += dispatch
    for body in bodies.values():
        lines += body
    lines.append("COMMIT")
    rules = sum(1 for line in lines if line.startswith("-A "))
    return NodePolicy("\n".join(lines) + "\n", tuple(bodies), rules, flow_rules(local, allows_of))


def node_script(policy: NodePolicy) -> str:
    """Load the payload atomically, keep the hook first in FORWARD, drop stale pod chains,
    then delete the conntrack entries of flows the new rules deny."""
    hook = f"-A FORWARD -j {POLICY_CHAIN}"
    wanted = " ".join(policy.chains)
    return script(
        [
            f"iptables-restore --noflush <<'LABKIT_EOF'\n{policy.payload.rstrip()}\nLABKIT_EOF",
            # First in FORWARD: kube-proxy's KUBE-FORWARD ACCEPTs marked traffic.
            f'if [ "$(iptables -S FORWARD | sed -n 2p)" != "{hook}" ]; then',
            f"  while iptables -D FORWARD -j {POLICY_CHAIN} 2>/dev/null; do :; done",
            f"  iptables -I FORWARD 1 -j {POLICY_CHAIN}",
            "fi",
            # Chains of pods that left the node: unreferenced since the restore above.
            f"for chain in $(iptables -S | awk '$1 == \"-N\" && $2 ~ /^{POD_CHAIN_PREFIX}/ {{print $2}}'); do",
            f'  case " {wanted} " in *" $chain "*) ;; *) iptables -F "$chain"; iptables -X "$chain" ;; esac',
            "done",
            # After the restore: whatever the old rules let in is judged by the new ones.
            f"python3 -c {q(prune_program())} {q(json.dumps(policy.flow_rules, sort_keys=True))}",
        ]
    )


def node_addresses_in_pod_network(pod_subnets: Mapping[str, IPv4Network]) -> list[IPv4Address]:
    """Addresses nodes use inside the pod CIDR: the VTEP (.0) and the bridge gateway (.1)."""
    return [address for subnet in pod_subnets.values() for address in (subnet[0], subnet[1])]


def plan(
    topology: Topology, pod_ips: Mapping[str, IPv4Address], pod_subnets: Mapping[str, IPv4Network]
) -> dict[str, NodePolicy]:
    """Per cluster node, its policy rules."""
    pods = pod_views(topology, pod_ips)
    nodes_in_pod_network = node_addresses_in_pod_network(pod_subnets)
    return {node: render_node(node, topology, pods, nodes_in_pod_network) for node in pod_subnets}


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
