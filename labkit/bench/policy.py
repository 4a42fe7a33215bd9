"""`labkit bench policy`: what network policy rules cost, measured here.

Two nodes; `client` on node-1 calls `server` on node-2. For each rule count N
(0: no policy at all), one policy selects `server` with N ingress rules: N-1
decoy /32 blocks that never match, and the client last, so that a new
connection walks every rule of the chain on node-2 before it is allowed.

Per N:
- apply_s: `lab.set_policies` from the previous set to this one (plan, then
  iptables-restore on every node in parallel);
- change_s: one more decoy on top of N rules (a policy change, all nodes);
- rtt p50/p99: sockperf UDP ping-pong. One flow: only its first packet walks
  the chain, the rest are conntrack-established; expect no difference;
- connect p50/p99: a new TCP connection each time, so each SYN walks the chain;
- iperf3 TCP throughput (one connection, established after its SYN).

Traffic figures are the median of `repeats` rounds (the host is shared and
noisy); each round is kept in the JSON.
"""

from __future__ import annotations

import statistics
import time
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from labkit.bench.paths import rtt_percentiles
from labkit.bench.report import document, figures_table, fresh_lab, lab_name, write_json
from labkit.core import probes
from labkit.core.endpoint import Endpoint
from labkit.dataplane.script import q
from labkit.errors import LabkitError
from labkit.lab import Lab
from labkit.topology import Topology, parse_topology

TOPOLOGY = """\
name: bench-policy
nodes:
  node-1: {}
  node-2: {}
pods:
  client: {node: node-1}
  server: {node: node-2, labels: {app: server}, run: [echo-server]}
"""
DECOY_BASE = IPv4Address("198.18.0.0")  # benchmarking range (RFC 2544): never a lab address
CONNECTS = 300
TRAFFIC_FIGURES = ("rtt_p50_us", "rtt_p99_us", "connect_p50_us", "connect_p99_us", "tcp_gbit_s")

_CONNECT_LOOP = r"""
import socket, sys, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(count):
    start = time.perf_counter()
    s = socket.create_connection((host, port), timeout=2)
    elapsed = (time.perf_counter() - start) * 1e6
    s.close()
    print(round(elapsed, 1))
"""


def policies_with(rules: int, client_ip: IPv4Address) -> dict[str, Any]:
    """One policy on `server` with `rules` ingress rules, the client's the last; 0: none."""
    if rules == 0:
        return {}
    decoys = [{"ip_block": {"cidr": f"{DECOY_BASE + i}/32"}} for i in range(rules - 1)]
    peers = [*decoys, {"ip_block": {"cidr": f"{client_ip}/32"}}]
    return {
        "bench": {
            "namespace": "default",
            "pod_selector": {"match_labels": {"app": "server"}},
            "ingress": [{"from": peers}],
        }
    }


def connect_percentiles(
    client: Endpoint, server: Endpoint, port: int = 9000
) -> tuple[float, float]:
    """TCP connect times (p50, p99) in µs, one new connection after another."""
    output = client.exec(
        f"python3 -c {q(_CONNECT_LOOP)} {server.ip} {port} {CONNECTS}", timeout=120
    ).stdout
    samples = sorted(float(line) for line in output.split())
    if len(samples) != CONNECTS:
        raise LabkitError(f"connect loop returned {len(samples)} of {CONNECTS} samples")
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def chain_rules(lab: Lab, node: str) -> int:
    """Policy rules loaded on the node, counted in its kernel tables."""
    out = lab.node(node).exec("iptables -S | grep -c '^-A LABKIT-POL' || true").stdout
    return int(out.strip() or 0)


def timed_set(lab: Lab, policies: dict[str, Any]) -> float:
    started = time.perf_counter()
    lab.set_policies(policies)
    return time.perf_counter() - started


def measure(lab: Lab, rules: int, seconds: int, repeats: int) -> dict[str, Any]:
    """One rule count: apply times once, traffic figures as the median of `repeats` rounds."""
    client, server = lab.pod("client"), lab.pod("server")
    policies = policies_with(rules, client.ip)
    apply_s = timed_set(lab, policies)
    loaded = chain_rules(lab, "node-2")
    planned = lab.policy.rule_counts()[
        "node-2"
    ]  # N, plus the dispatch, default deny and stateful rules
    if loaded != planned:
        raise LabkitError(f"node-2 holds {loaded} policy rules, {planned} were planned")
    change_s = None
    if rules:
        change_s = timed_set(lab, policies_with(rules + 1, client.ip))
        timed_set(lab, policies)
    rounds = []
    for _ in range(repeats):
        rtt_p50, rtt_p99 = rtt_percentiles(client, server, seconds)
        connect_p50, connect_p99 = connect_percentiles(client, server)
        throughput = probes.iperf(client, server, seconds=seconds).gbit_per_s
        rounds.append((rtt_p50, rtt_p99, connect_p50, connect_p99, throughput))
    medians = [statistics.median(values) for values in zip(*rounds, strict=True)]
    return {
        "rules": rules,
        "iptables_rules_node_2": loaded,
        "apply_s": apply_s,
        "change_s": change_s,
        **dict(zip(TRAFFIC_FIGURES, medians, strict=True)),
        "rounds": [dict(zip(TRAFFIC_FIGURES, r, strict=True)) for r in rounds],
    }


def topology() -> Topology:
    return parse_topology(TOPOLOGY, source="bench-policy")


def run(
    counts: list[int], *, seconds: int, repeats: int, out: Path, console: Console
) -> dict[str, Any]:
    lab = fresh_lab(topology(), lab_name("policy"), console)
    rows = []
    try:
        for rules in counts:
            console.print(f"  {rules} rules ...", highlight=False)
            rows.append(measure(lab, rules, seconds, repeats))
    finally:
        lab.down()
    results = document(
        "policy", seconds_per_run=seconds, repeats=repeats, connects_per_sample=CONNECTS,
        results=rows,
    )  # fmt: skip
    write_json(out, results)
    console.print(render(rows))
    console.print(f"results: {out}")
    return results


def render(rows: list[dict[str, Any]]) -> Table:
    table = figures_table(
        "network policy, client (node-1) -> server (node-2); times in µs unless said",
        ("rules", "loaded", "apply s", "change s", "rtt p50", "rtt p99", "conn p50", "conn p99",
         "Gbit/s"),
        title_justify="left",
    )  # fmt: skip
    for row in rows:
        table.add_row(
            str(row["rules"]),
            str(row["iptables_rules_node_2"]),
            f"{row['apply_s']:.3f}",
            "-" if row["change_s"] is None else f"{row['change_s']:.3f}",
            f"{row['rtt_p50_us']:.1f}",
            f"{row['rtt_p99_us']:.1f}",
            f"{row['connect_p50_us']:.0f}",
            f"{row['connect_p99_us']:.0f}",
            f"{row['tcp_gbit_s']:.2f}",
        )
    return table
