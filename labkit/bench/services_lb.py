"""`labkit bench services`, the LoadBalancer part: takeover and the traffic policies.

On the labs of topologies/service-types.yaml (L2) and service-types-bgp.yaml (BGP):

- takeover: a client on the external node sends one request after another
  (new connection each, 0.3 s timeout) to a LoadBalancer address while the
  node it reaches stops. L2: the elected node stops; its peers' speakers
  notice (heartbeats) and the runner-up answers ARP and sends gratuitous ARP.
  BGP: one of three announcing nodes stops (its kernel closes the session:
  the router withdraws at once) or loses its link (the router drops its path
  when the BGP hold time ends). Reported: the longest time without an answer and
  the requests that failed meanwhile, and how long after the fault requests
  still failed (under ECMP most flows keep their path: the gaps are short,
  the failures go on until the hold time ends).
- first packet: connect() time of new TCP connections from the external node
  through a node port on the node that has the endpoint, Local policy
  (DNAT only) against Cluster (DNAT and masquerade), the same pod behind both.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from labkit.bench.report import figures_table, fresh_lab, lab_name
from labkit.dataplane.lb_announce import l2_owner
from labkit.dataplane.script import q
from labkit.lab import Lab
from labkit.load import ContinuousClient
from labkit.topology.loader import load_topology

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"
_CONNECTS = r"""
import json, socket, sys, time
ip, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
times, failures = [], 0
for i in range(count + 20):
    s = socket.socket(); s.settimeout(2)
    started = time.perf_counter()
    try:
        s.connect((ip, port))
        if i >= 20:
            times.append((time.perf_counter() - started) * 1e6)
    except OSError:
        failures += 1
    s.close()
print(json.dumps({"us": times, "failures": failures}))
"""


def _percentiles(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "p50_us": round(statistics.median(ordered), 1),
        "p99_us": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
    }


def first_packet(lab: Lab, connections: int) -> dict[str, Any]:
    outside, node = lab.node("outside"), lab.node("node-2")
    found: dict[str, Any] = {}
    for policy, service in (("Local", "lb-local"), ("Cluster", "np-cluster")):
        port = lab.service(service).node_port("http")
        command = f"python3 -c {q(_CONNECTS)} {node.ip} {port} {connections}"
        result = json.loads(outside.exec(command, timeout=connections + 60).stdout)
        found[policy] = {**_percentiles(result["us"]), "failures": result["failures"]}
    return found


def takeover(
    lab: Lab, client_node: str, service: str, node: str, fault: str = "stop"
) -> dict[str, Any]:
    """`fault` stop: the node's container stops (its kernel closes the BGP session at
    once); link-down: its underlay link goes down (nothing says goodbye: hold time)."""
    ip = lab.service(service).lb_ip
    load = ContinuousClient(
        lab.node(client_node), ip, 80, path="/hostname", timeout=0.3, duration=40
    )
    load.start().wait_successes(5)
    before = lab.describe()["load_balancer"]["addresses"]
    holders = next(a["announced_by"] for a in before if a["ip"] == str(ip))
    stopped_at = time.time()
    done = lab.faults.stop_node(node) if fault == "stop" else lab.faults.link_down(node)
    try:
        load.wait_successes(10, within=20)
        result = load.stop().after(stopped_at - 0.5)
    finally:
        lab.faults.revert(done)
    return {
        "fault": fault,
        "node": node,
        "announced_by_before": holders,
        "outage_s": round(result.outage_s, 2),
        # ECMP keeps answering most flows meanwhile: how long some still failed.
        "failing_for_s": round(
            max((r.end for r in result.requests if not r.ok), default=stopped_at) - stopped_at, 2
        ),
        "failed_requests": result.failed,
        "requests": result.sent,
    }


def _wait_paths(lab: Lab, service: str, count: int) -> None:
    from labkit import expect
    from labkit.dataplane.lb_bgp import next_hops, routes_command

    router, ip = lab.node("router"), lab.service(service).lb_ip

    def enough() -> None:
        found = next_hops(router.exec(routes_command(ip)).stdout)
        assert len(found) == count, found

    expect.eventually(enough, within=30, what=f"{count} BGP paths to {ip}")


def measure(console: Console, rounds: int, connections: int) -> dict[str, Any]:
    results: dict[str, Any] = {"l2_takeover": [], "bgp_takeover": []}
    lab = fresh_lab(load_topology(TOPOLOGIES / "service-types.yaml"), lab_name("lb-l2"), console)
    try:
        owner = l2_owner(("node-1", "node-2", "node-3"), lab.service("lb-takeover").lb_ip)
        assert owner is not None
        for _ in range(rounds):
            results["l2_takeover"].append(takeover(lab, "outside", "lb-takeover", owner))
            console.print(f"    L2 takeover: {results['l2_takeover'][-1]}", highlight=False)
        results["first_packet"] = first_packet(lab, connections)
        console.print(f"    first packet: {results['first_packet']}", highlight=False)
    finally:
        lab.down()
    bgp_topology = load_topology(TOPOLOGIES / "service-types-bgp.yaml")
    lab = fresh_lab(bgp_topology, lab_name("lb-bgp"), console)
    try:
        for fault in ("stop", "link-down"):
            for _ in range(rounds):
                _wait_paths(lab, "lb-takeover", 3)
                row = takeover(lab, "router", "lb-takeover", "node-1", fault)
                results["bgp_takeover"].append(row)
                console.print(f"    BGP takeover: {row}", highlight=False)
    finally:
        lab.down()
    for kind in ("l2_takeover", "bgp_takeover"):
        outages = [r["outage_s"] for r in results[kind]]
        results[f"{kind}_median_s"] = round(statistics.median(outages), 2) if outages else None
    return results


def render(results: dict[str, Any]) -> Table:
    table = figures_table(
        "LoadBalancer: takeover when the node stops (longest time without an answer, failed "
        "requests); first-packet connect() through a node port, Local vs Cluster policy (µs)",
        ("what", "figure"),
        left=("what", "figure"),
        title_justify="left",
    )
    for kind, label in (("l2_takeover", "L2 takeover"), ("bgp_takeover", "BGP takeover")):
        for row in results[kind]:
            figure = (
                f"{row['outage_s']:.2f} s ({row['failing_for_s']:.2f} s with failures), "
                f"{row['failed_requests']}/{row['requests']} failed"
            )
            table.add_row(f"{label} ({row['fault']} {row['node']})", figure)
    for policy, row in results.get("first_packet", {}).items():
        table.add_row(
            f"first packet, {policy}", f"p50 {row['p50_us']:.0f}, p99 {row['p99_us']:.0f}"
        )
    return table
