"""Conntrack after a policy change: the flows the new rules deny, decided on the
node by a small program that deletes their entries.

Conntrack entries outlive a policy change: a flow the old rules let through
would keep matching ESTABLISHED, and so would a "new" datagram that happens to
reuse its 5-tuple. After loading its rules a node therefore deletes the
entries of its pods' flows that the new rules deny (as Calico and Cilium clean
their own state), so the new policy holds for every packet that follows.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from labkit.dataplane.policy_allows import Allow, PodView

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
