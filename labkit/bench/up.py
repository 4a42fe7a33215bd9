"""`labkit bench up`: how long `up` and `down` take, against bare containers.

Goals (issue 2): default topology up <= 5 s and <= 2x starting the same node
containers bare with the docker SDK; 20 nodes x 5 pods up <= 20 s; pod-to-pod
iperf3 across nodes over VXLAN >= 0.7 of node-to-node over the underlay.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from labkit.bench.report import lab_name, write_json
from labkit.concurrency import parallel
from labkit.lab import Lab
from labkit.runtime.docker import LAB_LABEL, DockerRuntime
from labkit.runtime.images import node_image
from labkit.topology import Topology, load_topology, parse_topology

BARE_LAB = lab_name("bare")


def big_topology(nodes: int = 20, pods_per_node: int = 5) -> Topology:
    lines = ["name: bench-big", "nodes:"]
    lines += [f"  node-{i}: {{}}" for i in range(1, nodes + 1)]
    lines.append("pods:")
    for i in range(1, nodes + 1):
        for j in range(1, pods_per_node + 1):
            run = "[echo-server]" if j == 1 else "[]"
            lines.append(f"  p-{i}-{j}: {{node: node-{i}, run: {run}}}")
    return parse_topology("\n".join(lines) + "\n")


def time_up_down(topology: Topology, runtime: DockerRuntime, repeats: int) -> dict[str, Any]:
    ups, downs, phases = [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        lab = Lab.up(topology.model_copy(deep=True), runtime=runtime, name=lab_name(topology.name))
        ups.append(time.perf_counter() - started)
        phases.append(dict(lab.timings))
        started = time.perf_counter()
        lab.down()
        downs.append(time.perf_counter() - started)
    return {
        "up_s": statistics.median(ups),
        "down_s": statistics.median(downs),
        "phases_s": {k: statistics.median(p[k] for p in phases) for k in phases[0]},
    }


def time_bare(count: int, runtime: DockerRuntime, repeats: int) -> float:
    """Create one internal network and start `count` node-image containers on
    it in parallel with the docker SDK: what any lab tool must at least do."""
    image = node_image(runtime.client)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        network = runtime.client.networks.create(
            f"{BARE_LAB}-net", internal=True, labels={LAB_LABEL: BARE_LAB}
        )
        def start(i: int, network_name: str = str(network.name)) -> None:
            runtime.client.containers.run(
                image, ["sleep", "infinity"], detach=True, name=f"{BARE_LAB}-{i}",
                network=network_name, labels={LAB_LABEL: BARE_LAB}, init=True,
            )  # fmt: skip

        parallel(start, range(count))
        samples.append(time.perf_counter() - started)
        runtime.remove_lab(BARE_LAB)
    return statistics.median(samples)


def throughput_ratio(topology: Topology, runtime: DockerRuntime, seconds: int) -> dict[str, float]:
    lab = Lab.up(topology.model_copy(deep=True), runtime=runtime, name=lab_name(topology.name))
    try:
        members = topology.member_nodes()
        nodes = [lab.node(members[0]), lab.node(members[1])]
        pods = [node.pods()[0] for node in nodes]
        underlay = lab.iperf(nodes[0], nodes[1], seconds=seconds).gbit_per_s
        overlay = lab.iperf(pods[0], pods[1], seconds=seconds).gbit_per_s
    finally:
        lab.down()
    return {"underlay_gbit_s": underlay, "overlay_gbit_s": overlay, "ratio": overlay / underlay}


def run(topology_ref: str, *, big: bool, out: Path, console: Console, repeats: int = 3) -> dict[str, Any]:
    runtime = DockerRuntime()
    topology = load_topology(topology_ref)
    runtime.remove_lab(BARE_LAB)
    console.print(f"timing up/down of {topology.name} ({len(topology.nodes)} nodes, {repeats} runs)...")
    results: dict[str, Any] = {"topology": topology.name, "nodes": len(topology.nodes)}
    results["lab"] = time_up_down(topology, runtime, repeats)
    results["bare_start_s"] = time_bare(len(topology.nodes), runtime, repeats)
    results["up_vs_bare"] = results["lab"]["up_s"] / results["bare_start_s"]
    if big:
        console.print("timing 20 nodes x 5 pods...")
        big_one = big_topology()
        results["big"] = time_up_down(big_one, runtime, 1)
        results["big"]["bare_start_s"] = time_bare(len(big_one.nodes), runtime, 1)
    console.print("iperf3: pod to pod over the backend vs node to node over the underlay...")
    results["throughput"] = throughput_ratio(topology, runtime, seconds=3)
    show(results, console)
    write_json(out, results, newline=False)
    console.print(f"written: {out}")
    return results


def show(results: dict[str, Any], console: Console) -> None:
    table = Table(title="labkit bench up")
    for column in ("measure", "value", "goal", "met"):
        table.add_column(column)

    def row(name: str, value: float, unit: str, goal: str, met: bool) -> None:
        table.add_row(name, f"{value:.2f} {unit}", goal, "yes" if met else "NO")

    lab = results["lab"]
    row(f"up, {results['topology']} ({results['nodes']} nodes)", lab["up_s"], "s", "<= 5 s", lab["up_s"] <= 5)
    phases = ", ".join(f"{k} {v:.2f} s" for k, v in lab["phases_s"].items() if k != "up")
    table.add_row("  phases", phases, "", "")
    row("down", lab["down_s"], "s", "", True)
    row("bare SDK start, same nodes", results["bare_start_s"], "s", "", True)
    row("up / bare", results["up_vs_bare"], "x", "<= 2x", results["up_vs_bare"] <= 2)
    if "big" in results:
        big = results["big"]
        row("up, 20 nodes x 5 pods", big["up_s"], "s", "<= 20 s", big["up_s"] <= 20)
        row("down, 20 nodes x 5 pods", big["down_s"], "s", "", True)
        row("bare SDK start, 20 nodes", big["bare_start_s"], "s", "", True)
    tp = results["throughput"]
    row("iperf3 node->node underlay", tp["underlay_gbit_s"], "Gbit/s", "", True)
    row("iperf3 pod->pod across nodes", tp["overlay_gbit_s"], "Gbit/s", "", True)
    row("overlay / underlay", tp["ratio"], "", ">= 0.7", tp["ratio"] >= 0.7)
    console.print(table)
