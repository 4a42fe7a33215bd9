"""`labkit bench services`: the cost of the service proxy, iptables against nftables.

For each size (100, 1,000, 5,000 services of 10 endpoints) and each mode
(kube-proxy's iptables mode with iptables-nft and with iptables-legacy, and
its nftables mode), on a lab of three nodes:

- full sync: every node writes every rule (one transaction per node, in parallel);
- one-endpoint change: the last service swaps one endpoint (a partial sync on
  every node), write-only as kube-proxy does it, and with labkit's drift
  check (dump + digest before and after) on top;
- rules: what the kernel holds (nftables: rules, plus map elements);
- first packet: connect() time of new TCP connections from a pod to the last
  service's VIP, p50 and p99 (iptables walks KUBE-SERVICES to the last rule;
  nftables looks the VIP up in a map).

Endpoints are synthetic in number, real in kind: every service shares the same
10 echo-server pods (on node-1, with the client), so a packet to any VIP ends
in a live pod. Goals (issue 4): full sync of 1,000 services <= 2 s, a
one-endpoint change on all nodes <= 0.5 s.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from labkit.bench.report import document, figures_table, fresh_lab, lab_name, write_json
from labkit.concurrency import parallel
from labkit.dataplane.kubeproxy import EndpointPlan, ProxyPlan, ServicePortPlan
from labkit.dataplane.proxy_modes import Mode
from labkit.dataplane.script import q
from labkit.lab import Lab
from labkit.layers.proxy_program import program, record_digests
from labkit.topology import Topology, parse_topology

ENDPOINTS = 10
MODES = {
    "iptables": Mode("iptables", "nft"),
    "iptables-legacy": Mode("iptables", "legacy"),
    "nftables": Mode("nftables"),
}
GOALS = {"full_sync_1000_s": 2.0, "change_s": 0.5}
FIRST_VIP = IPv4Address("10.97.0.1")  # in the service CIDR, clear of 10.96.0.10 (DNS)
CHANGES = 3  # one-endpoint changes per measurement (median)

# connect() timings of new connections, in one process: one exec, no per-probe fork.
_CONNECTS = r"""
import json, socket, sys, time
vip, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
times, failures = [], 0
for i in range(count + 20):
    s = socket.socket(); s.settimeout(2)
    started = time.perf_counter()
    try:
        s.connect((vip, port))
        if i >= 20:  # the first ones warm caches up
            times.append((time.perf_counter() - started) * 1e6)
    except OSError:
        failures += 1
    s.close()
print(json.dumps({"us": times, "failures": failures}))
"""


def topology() -> Topology:
    """Three nodes; the endpoint pods and the client on node-1 (no VXLAN hop in the latency)."""
    lines = [
        "name: bench-services",
        "nodes:",
        "  node-1: {}",
        "  node-2: {}",
        "  node-3: {}",
        "pods:",
    ]
    lines += [f"  ep-{i}: {{node: node-1, run: [echo-server]}}" for i in range(ENDPOINTS + 1)]
    lines.append("  client: {node: node-1}")
    return parse_topology("\n".join(lines) + "\n")


def synthetic_plan(lab: Lab, count: int) -> ProxyPlan:
    """`count` services, port 80 -> 8080, each with the same 10 endpoint pods."""
    pods = [f"ep-{i}" for i in range(ENDPOINTS)]
    endpoints = tuple(EndpointPlan(lab.pod(p).ip, 8080, p) for p in pods)
    services = tuple(
        ServicePortPlan("bench", f"svc-{i}", "http", "TCP", FIRST_VIP + i, 80, endpoints=endpoints)
        for i in range(count)
    )
    return ProxyPlan(lab.topology.cluster.pod_cidr, services)


def with_last_endpoint(lab: Lab, plan: ProxyPlan, pod: str) -> ProxyPlan:
    """The plan with the last service's last endpoint replaced by `pod`."""
    last = plan.services[-1]
    swapped = (*last.endpoints[:-1], EndpointPlan(lab.pod(pod).ip, 8080, pod))
    return dataclasses.replace(
        plan, services=(*plan.services[:-1], dataclasses.replace(last, endpoints=swapped))
    )


def clean(lab: Lab, nodes: list[str]) -> None:
    """Remove every mode's rules (one transaction each), so modes never mix."""
    empty = ProxyPlan(lab.topology.cluster.pod_cidr, ())
    nft_cleanup = MODES["nftables"].cleanup_script()
    parallel(lambda node: lab.node(node).exec(nft_cleanup), nodes)
    for mode in MODES.values():
        if mode.name != "nftables":
            program(lab.cluster, nodes, mode, None, empty, {}, verify=False)


def first_packet(lab: Lab, vip: IPv4Address, connections: int) -> dict[str, float]:
    command = f"python3 -c {q(_CONNECTS)} {vip} 80 {connections}"
    result = json.loads(lab.pod("client").exec(command, timeout=connections + 60).stdout)
    times = sorted(result["us"])
    if not times:
        raise RuntimeError(f"no connection to {vip} succeeded")
    return {
        "p50_us": round(statistics.median(times), 1),
        "p99_us": round(times[min(len(times) - 1, int(len(times) * 0.99))], 1),
        "failures": result["failures"],
    }


def measure(lab: Lab, mode_name: str, count: int, connections: int) -> dict[str, Any]:
    mode, nodes = MODES[mode_name], list(lab.addresses.pod_subnets)
    clean(lab, nodes)
    plan = synthetic_plan(lab, count)
    full = program(lab.cluster, nodes, mode, None, plan, {}, fresh=True, verify=False)
    latency = first_packet(lab, plan.services[-1].vip, connections)
    writes, checked = [], []
    current = plan
    for index in range(CHANGES):
        swapped = with_last_endpoint(lab, plan, "ep-10" if index % 2 == 0 else "ep-9")
        writes.append(program(lab.cluster, nodes, mode, current, swapped, {}, verify=False).seconds)
        current = swapped
    digests = record_digests(lab.cluster, nodes, mode)
    for index in range(CHANGES):
        swapped = with_last_endpoint(lab, plan, "ep-9" if index % 2 == 0 else "ep-10")
        report = program(lab.cluster, nodes, mode, current, swapped, digests)
        assert report.kind == "partial", report.summary()
        checked.append(report.seconds)
        digests, current = report.digests, swapped
    row: dict[str, Any] = {
        "mode": mode_name,
        "services": count,
        "endpoints_per_service": ENDPOINTS,
        "nodes": len(nodes),
        "full_sync_s": round(full.seconds, 3),
        "change_s": round(statistics.median(writes), 3),
        "change_checked_s": round(statistics.median(checked), 3),
        "rules": mode.rule_count(plan),
        "first_packet_p50_us": latency["p50_us"],
        "first_packet_p99_us": latency["p99_us"],
        "connect_failures": latency["failures"],
    }
    if mode.name == "nftables":
        from labkit.dataplane.kubeproxy_nft import element_count

        row["map_elements"] = element_count(plan)
    return row


def run(
    sizes: list[int],
    modes: list[str],
    *,
    connections: int,
    out: Path,
    console: Console,
    lb_rounds: int = 0,
) -> dict[str, Any]:
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        from labkit.errors import UsageError

        raise UsageError(f"unknown mode(s) {', '.join(unknown)} (known: {', '.join(MODES)})")
    load_at_start = os.getloadavg()
    rows = []
    if sizes:
        lab = fresh_lab(topology(), lab_name("services"), console)
        try:
            for count in sizes:
                for mode in modes:
                    console.print(f"  {mode}: {count} services ...", highlight=False)
                    rows.append(measure(lab, mode, count, connections))
                    console.print(f"    {rows[-1]}", highlight=False)
        finally:
            lab.down()
    balancers = None
    if lb_rounds:
        from labkit.bench.services_lb import measure as measure_balancers

        console.print(f"  LoadBalancer takeover ({lb_rounds} rounds per mode), first packet ...")
        balancers = measure_balancers(console, lb_rounds, connections)
    load = {"start": load_at_start[0], "end": os.getloadavg()[0]}
    note = (
        f"synthetic endpoints: every service has the same {ENDPOINTS} real echo-server pods "
        "(on node-1 with the client); 3 nodes programmed in parallel"
    )
    results = document(
        "services",
        cpus=os.cpu_count(),
        note=note,
        connections_per_latency_sample=connections,
        # A shared host: other work running meanwhile shows here.
        load_average_1m=load,
        goals=GOALS,
        results=rows,
        load_balancer=balancers,
    )
    write_json(out, results)
    png = out.with_suffix(".png")
    if rows:
        draw(rows, png)
        console.print(render(rows))
    if balancers:
        from labkit.bench.services_lb import render as render_balancers

        console.print(render_balancers(balancers))
    if rows:
        console.print(note, highlight=False)
    console.print(
        f"host load average (1 min) {load['start']:.1f} at start, {load['end']:.1f} at end",
        highlight=False,
    )
    console.print(f"results: {out}, plot: {png}")
    return results


def render(rows: list[dict[str, Any]]) -> Table:
    table = figures_table(
        "service proxy on 3 nodes: sync times (s); first-packet connect() from a pod to the "
        "last service (µs); ok/MISS against the goals",
        ("mode", "svcs", "full", "change", "+check", "rules", "p50", "p99"),
        left=("mode",),
        title_justify="left",
    )
    for row in rows:
        full = f"{row['full_sync_s']:.2f}"
        if row["services"] == 1000:
            full += " ok" if row["full_sync_s"] <= GOALS["full_sync_1000_s"] else " MISS"
        change = f"{row['change_s']:.3f}"
        change += " ok" if row["change_s"] <= GOALS["change_s"] else " MISS"
        rules = str(row["rules"]) + ("+map" if "map_elements" in row else "")
        table.add_row(
            row["mode"], str(row["services"]), full, change, f"{row['change_checked_s']:.2f}",
            rules, f"{row['first_packet_p50_us']:.0f}", f"{row['first_packet_p99_us']:.0f}",
        )  # fmt: skip
    return table


def draw(rows: list[dict[str, Any]], png: Path) -> None:
    from labkit.bench.services_chart import draw as draw_chart

    draw_chart(rows, png, GOALS)
