"""Network policy as iptables: the allows of a node's pods -> an iptables-restore
payload and the script that loads it (see labkit.dataplane.policy for the chains).

Pure: topology and pod IPs in, text out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from labkit.dataplane.policy_allows import Allow, PodView, known_namespaces, pod_allows, pod_views
from labkit.dataplane.policy_conntrack import FlowRules, flow_rules, prune_program
from labkit.dataplane.script import q, script
from labkit.topology.model import Topology, key_name

POLICY_CHAIN = "LABKIT-POLICY"
POD_CHAIN_PREFIX = "LABKIT-POL-"
DENY = "REJECT --reject-with icmp-admin-prohibited"


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
