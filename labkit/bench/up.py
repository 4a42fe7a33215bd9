"""`labkit bench up`: bring-up and teardown against the bare start of the same containers.

Every figure is a ratio against a reference measured in the same run (issue 14):
- the default lab as whole processes: `labkit up FILE` / `labkit down` against
  one process that starts (removes) the same node containers bare
  (`python -m labkit.runtime.bare`): up <= 1.5x, down <= 1.2x; `labkit --help` <= 0.2 s;
- N nodes x 4 pods for N in 10, 20, 50, in one process, against the bare start
  of N containers: up(50) <= 2x bare(50), and the cost per node at 50 within
  1.2x of the cost per node at 10 (linear);
- 100 nodes x 2 pods (`--hundred`): up time and memory per node (containers
  from the engine's cgroup figures, plus the engine's own RSS), to size a machine.
On one machine the engine, the lab and the reference share the CPUs: the
ratios are what counts.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from labkit.bench.report import document, figures_table, lab_name, write_json
from labkit.errors import LabkitError
from labkit.lab import Lab
from labkit.runtime.bare import remove_bare, start_bare
from labkit.runtime.docker import DockerRuntime
from labkit.topology import Topology, parse_topology
from labkit.topology.loader import load_topology, resolve_topology_path

GOALS = {"up": 1.5, "down": 1.2, "help_s": 0.2, "up_50": 2.0, "linear": 1.2}
SIZES = (10, 20, 50)
LABKIT = [sys.executable, "-m", "labkit"]
BARE = [sys.executable, "-m", "labkit.runtime.bare"]


def big_topology(nodes: int = 20, pods_per_node: int = 5) -> Topology:
    lines = [f"name: bench-n{nodes}", "nodes:"]
    lines += [f"  node-{i}: {{}}" for i in range(1, nodes + 1)]
    lines.append("pods:")
    for i in range(1, nodes + 1):
        for j in range(1, pods_per_node + 1):
            run = "[echo-server]" if j == 1 else "[]"
            lines.append(f"  p-{i}-{j}: {{node: node-{i}, run: {run}}}")
    return parse_topology("\n".join(lines) + "\n")


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started


def run_name(kind: str) -> str:
    """A lab name of this run: a network the engine cannot remove (its phantom endpoint
    after parallel removals, seen with 50 bare containers) keeps an earlier run's name."""
    return lab_name(f"up-{kind}-{os.getpid()}")


def whole_processes(path: Path, nodes: int, repeats: int) -> dict[str, float]:
    """Medians of: `labkit --help`, `labkit up`/`down` of the topology, bare up/down."""
    lab, bare = run_name("cli"), run_name("bare")
    samples: dict[str, list[float]] = {
        k: [] for k in ("help", "up", "down", "bare_up", "bare_down")
    }
    for _ in range(repeats):
        samples["help"].append(timed([*LABKIT, "--help"]))
        samples["bare_up"].append(timed([*BARE, "up", bare, str(nodes)]))
        samples["bare_down"].append(timed([*BARE, "down", bare]))
        samples["up"].append(timed([*LABKIT, "up", str(path), "--name", lab]))
        samples["down"].append(timed([*LABKIT, "down", lab]))
    return {f"{key}_s": statistics.median(values) for key, values in samples.items()}


def in_process(runtime: DockerRuntime, nodes: int, pods: int) -> dict[str, Any]:
    """One lab of `nodes` x `pods` up and down, and the bare start of as many containers."""
    name, bare = run_name(f"n{nodes}"), run_name(f"bare{nodes}")
    started = time.perf_counter()
    start_bare(runtime, bare, nodes)
    bare_s = time.perf_counter() - started
    started = time.perf_counter()
    bare_down_s: float | None = None
    try:
        remove_bare(runtime, bare)
        bare_down_s = time.perf_counter() - started
    except LabkitError as exc:  # the engine's phantom endpoint: the figures still count
        print(f"warning: the bare reference's teardown: {exc}", file=sys.stderr)
    started = time.perf_counter()
    lab = Lab.up(big_topology(nodes, pods), runtime=runtime, name=name)
    up_s = time.perf_counter() - started
    memory = node_memory(runtime, lab) if nodes >= 100 else {}
    started = time.perf_counter()
    lab.down()
    return {
        "nodes": nodes, "pods": nodes * pods, "up_s": up_s, "down_s": time.perf_counter() - started,
        "bare_up_s": bare_s, "bare_down_s": bare_down_s, "phases_s": dict(lab.timings), **memory,
    }  # fmt: skip


def node_memory(runtime: DockerRuntime, lab: Lab) -> dict[str, float]:
    """Memory per node: the containers' (cgroup usage) and the engine's RSS shared out."""
    containers = [node.container for node in lab.nodes()]
    used = sum(runtime.memory_bytes(container) for container in containers)
    engine = sum(rss_of(name) for name in ("dockerd", "containerd", "containerd-shim-runc-v2"))
    return {
        "container_mib_per_node": used / len(containers) / 2**20,
        "engine_mib_per_node": engine / len(containers) / 2**20,
    }


def rss_of(command: str) -> int:
    """The summed resident memory of every process named `command` on this host."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("Name", "").strip() == command[:15]:
            total += int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
    return total


def run(
    topology_ref: str, *, hundred: bool, repeats: int, out: Path, console: Console
) -> dict[str, Any]:
    runtime = DockerRuntime()
    path = resolve_topology_path(topology_ref)
    topology = load_topology(path)
    for leftover in sorted(lab for lab in runtime.lab_names() if lab.startswith(lab_name("up-"))):
        try:  # of an interrupted run
            runtime.remove_lab(leftover)
        except LabkitError as exc:  # the engine's phantom endpoint: its name is not reused
            print(f"warning: a leftover of an earlier run stays: {exc}", file=sys.stderr)
    os.environ.setdefault("LABKIT_NAME_PREFIX", "")
    console.print(f"whole processes: labkit up/down {topology.name} vs bare, {repeats} runs...")
    results = document("up", topology=topology.name, nodes=len(topology.nodes))
    results["processes"] = whole_processes(path, len(topology.nodes), repeats)
    results["scaling"] = []
    for nodes in (*SIZES, *((100,) if hundred else ())):
        console.print(f"in one process: {nodes} nodes x {2 if nodes >= 100 else 4} pods vs bare...")
        results["scaling"].append(in_process(runtime, nodes, 2 if nodes >= 100 else 4))
    results["ratios"] = ratios(results)
    show(results, console)
    write_json(out, results)
    console.print(f"written: {out}")
    return results


def ratios(results: dict[str, Any]) -> dict[str, float]:
    processes = results["processes"]
    by_size = {row["nodes"]: row for row in results["scaling"]}
    found = {
        "up": processes["up_s"] / processes["bare_up_s"],
        "down": processes["down_s"] / processes["bare_down_s"],
        "help_s": processes["help_s"],
    }
    if 50 in by_size and 10 in by_size:
        found["up_50"] = by_size[50]["up_s"] / by_size[50]["bare_up_s"]
        found["linear"] = (by_size[50]["up_s"] / 50) / (by_size[10]["up_s"] / 10)
    return found


def show(results: dict[str, Any], console: Console) -> None:
    processes, found = results["processes"], results["ratios"]
    table = figures_table("labkit bench up (ratios against the bare start in the same run)",
                          ("measure", "labkit", "reference", "ratio", "goal", "met"), left=("measure",))  # fmt: skip

    def row(name: str, ours: float, ref: float | None, key: str, unit: str = "s") -> None:
        ratio = found[key]
        reference = f"{ref:.2f} {unit}" if ref is not None else ""
        table.add_row(name, f"{ours:.2f} {unit}", reference, f"{ratio:.2f}" + ("" if ref is None else "x"),
                      f"<= {GOALS[key]:g}", "yes" if ratio <= GOALS[key] else "NO")  # fmt: skip

    nodes = results["nodes"]
    row(
        f"up {results['topology']} ({nodes} nodes), whole process",
        processes["up_s"],
        processes["bare_up_s"],
        "up",
    )
    row("down, whole process", processes["down_s"], processes["bare_down_s"], "down")
    table.add_row("labkit --help", f"{processes['help_s']:.3f} s", "", "", f"<= {GOALS['help_s']} s",
                  "yes" if processes["help_s"] <= GOALS["help_s"] else "NO")  # fmt: skip
    for size in results["scaling"]:
        table.add_row(
            f"{size['nodes']} nodes x {size['pods'] // size['nodes']} pods, one process",
            f"{size['up_s']:.2f} s ({size['up_s'] / size['nodes'] * 1000:.0f} ms/node)",
            f"{size['bare_up_s']:.2f} s", f"{size['up_s'] / size['bare_up_s']:.2f}x", "", "",
        )  # fmt: skip
        if "container_mib_per_node" in size:
            table.add_row("  memory per node", f"{size['container_mib_per_node']:.1f} MiB containers",
                          f"{size['engine_mib_per_node']:.1f} MiB engine", "", "", "")  # fmt: skip
    if "up_50" in found:
        table.add_row("up(50) / bare(50)", "", "", f"{found['up_50']:.2f}x", f"<= {GOALS['up_50']:g}x",
                      "yes" if found["up_50"] <= GOALS["up_50"] else "NO")  # fmt: skip
        table.add_row("cost per node at 50 / at 10", "", "", f"{found['linear']:.2f}", f"<= {GOALS['linear']:g}",
                      "yes" if found["linear"] <= GOALS["linear"] else "NO")  # fmt: skip
    console.print(table)
    console.print(
        "The engine, the labs and the references share this machine's CPUs: ratios count."
    )
