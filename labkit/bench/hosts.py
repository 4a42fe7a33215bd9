"""`labkit bench hosts`: one lab over 1, 2 and 3 Docker hosts (a sandbox on this machine).

- up and down time of the default topology and of a 20-node one, per host count;
- per backend, pod-to-pod throughput (iperf3 TCP 1/4 streams, UDP at the pod
  MTU) and RTT (sockperf p50/p99), within a host (two nodes on h1) and across
  hosts (h1 -> h2), against the baseline: the sandbox's own host-to-host path
  (h1's eth0 -> h2's eth0, in host-network containers), measured in the same run.

The sandbox's hosts are network namespaces of this one machine: they share
its CPUs, so only the ratios mean something; the output says so.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from labkit.bench.charts import bar_panel_style, pyplot, save
from labkit.bench.paths import Figures, measure_path, median
from labkit.bench.report import document, figures_table, lab_name, write_json
from labkit.bench.up import big_topology
from labkit.lab import Lab
from labkit.runtime.base import LAB_LABEL, ExecResult
from labkit.runtime.docker import UNCONFINED, DockerRuntime
from labkit.runtime.sandbox import Sandbox, load_sandbox, sandbox_down, sandbox_up
from labkit.runtime.select import runtime_for
from labkit.topology import Topology, load_topology, parse_topology

SANDBOX = "bench"
BACKENDS = ("vxlan", "host-gw", "udp", "bgp")
SHARED_CPUS = (
    "the sandbox's hosts are network namespaces of one machine and share its {cpus} CPU(s): "
    "absolute figures are not those of real hosts, the ratios to the host-to-host baseline are"
)


def hosts_file_of(sandbox: Sandbox, count: int, folder: Path) -> str:
    """A hosts file naming the sandbox's first `count` hosts (they stay one swarm)."""
    whole = yaml.safe_load(sandbox.inventory.read_text())
    names = list(whole["hosts"])[:count]
    subset = {**whole, "hosts": {name: whole["hosts"][name] for name in names}}
    path = folder / f"hosts-{count}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(subset, sort_keys=False))
    return str(path)


def paths_topology(backend: str) -> Topology:
    """Three nodes: node-1 and node-2 on h1 (within a host), node-3 on h2 (across)."""
    lines = [
        f"name: hosts-{backend}",
        "nodes:",
        "  node-1: {host: h1}",
        "  node-2: {host: h1}",
        "  node-3: {host: h2}",
        f"cluster: {{backend: {backend}}}",
        "pods:",
        "  client-1: {node: node-1, run: [echo-server]}",
        "  web-2: {node: node-2, run: [echo-server]}",
        "  web-3: {node: node-3, run: [echo-server]}",
    ]
    return parse_topology("\n".join(lines) + "\n")


# -- the baseline: the sandbox hosts' own path ------------------------------------


@dataclass
class HostEndpoint:
    """A host-network container on one sandbox host: the host's own stack, as an Endpoint."""

    name: str
    address: IPv4Address
    runtime: DockerRuntime

    @property
    def ip(self) -> IPv4Address:
        return self.address

    def exec(self, command: str, *, check: bool = True, timeout: float | None = None) -> ExecResult:
        return self.runtime.exec(self.name, command, check=check, timeout=timeout)


def host_endpoint(
    runtime: DockerRuntime, image: str, name: str, address: str, lab: str
) -> HostEndpoint:
    runtime.client.containers.run(
        image, ["sleep", "infinity"], name=name, detach=True, network_mode="host",
        cap_add=["NET_ADMIN", "NET_RAW"], security_opt=UNCONFINED, labels={LAB_LABEL: lab},
    )  # fmt: skip
    return HostEndpoint(name, IPv4Address(address), runtime)


def baseline(sandbox: Sandbox, image: str, seconds: float, repeats: int) -> Figures:
    lab = lab_name("hosts-baseline")
    first, second = sandbox.hosts[0], sandbox.hosts[1]
    runtimes = [DockerRuntime(sandbox.client(host)) for host in (first, second)]
    for runtime in runtimes:
        runtime.remove_lab(lab)
    try:
        client = host_endpoint(runtimes[0], image, f"{lab}-h1", first.address, lab)
        server = host_endpoint(runtimes[1], image, f"{lab}-h2", second.address, lab)
        return median([measure_path(client, server, 1500, seconds) for _ in range(repeats)])
    finally:
        for runtime in runtimes:
            runtime.remove_lab(lab)


# -- the runs ------------------------------------------------------------------------------


def time_up_down(topology: Topology, runtime: Any) -> dict[str, float]:
    name = lab_name(f"hosts-{topology.name}")
    runtime.remove_lab(name)
    started = time.perf_counter()
    lab = Lab.up(topology.model_copy(deep=True), runtime=runtime, name=name)
    up_s = time.perf_counter() - started
    started = time.perf_counter()
    lab.down()
    return {"up_s": round(up_s, 2), "down_s": round(time.perf_counter() - started, 2)}


def bench_backend(backend: str, hosts: str, seconds: float, repeats: int) -> dict[str, Any]:
    topology = paths_topology(backend)
    runtime = runtime_for(hosts, topology)
    name = lab_name(topology.name)
    runtime.remove_lab(name)
    lab = Lab.up(topology, runtime=runtime, name=name)
    try:
        mtu = lab.cluster.pod_mtu
        client = lab.pod("client-1")
        paths = {"within a host": lab.pod("web-2"), "across hosts": lab.pod("web-3")}
        measured = {
            path: asdict(
                median([measure_path(client, server, mtu, seconds) for _ in range(repeats)])
            )
            for path, server in paths.items()
        }
    finally:
        lab.down()
    return {"pod_mtu": mtu, **measured}


def run(
    *,
    host_counts: list[int],
    backends: list[str],
    big_nodes: int,
    seconds: float,
    repeats: int,
    out: Path,
    png: Path,
    console: Console,
) -> dict[str, Any]:
    console.print(f"starting a sandbox of {max(*host_counts, 2)} hosts")
    sandbox = sandbox_up(max(*host_counts, 2), SANDBOX, progress=console.print)
    try:
        image = DockerRuntime().node_image()
        folder = out.parent
        topologies = [load_topology("default"), big_topology(big_nodes, 2)]
        lifecycle: dict[str, dict[str, Any]] = {}
        for count in host_counts:
            hosts = hosts_file_of(sandbox, count, folder)
            for topology in topologies:
                key = f"{topology.name} ({len(topology.nodes)} nodes)"
                console.print(f"  {key} on {count} host(s): up, down")
                runtime = runtime_for(hosts, topology)
                lifecycle.setdefault(key, {})[str(count)] = time_up_down(topology, runtime)
        two = hosts_file_of(sandbox, 2, folder)
        console.print("  baseline: host-to-host")
        base = asdict(baseline(load_sandbox(SANDBOX), image, seconds, repeats))
        paths = {}
        for backend in backends:
            console.print(f"  {backend}: within a host, across hosts")
            paths[backend] = bench_backend(backend, two, seconds, repeats)
    finally:
        sandbox_down(SANDBOX)
    cpus = DockerRuntime().engine_info().get("cpus")
    results = document(
        "hosts", note=SHARED_CPUS.format(cpus=cpus), lifecycle=lifecycle,
        baseline=base, paths=paths, seconds=seconds, repeats=repeats,
    )  # fmt: skip
    write_json(out, results)
    chart(results, png)
    show(results, console)
    console.print(f"JSON: {out}  PNG: {png}")
    return results


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "-"


def show(results: dict[str, Any], console: Console) -> None:
    counts = sorted({c for per in results["lifecycle"].values() for c in per})
    table = figures_table(
        "up / down (s) by host count",
        ["topology", *[f"{c} host(s)" for c in counts]],
        left={"topology"},
    )
    for key, per in results["lifecycle"].items():
        table.add_row(
            key,
            *[
                f"{per[c]['up_s']:.1f} / {per[c]['down_s']:.1f}" if c in per else "-"
                for c in counts
            ],
        )
    console.print(table)
    base = results["baseline"]
    columns = [
        "backend",
        "path",
        "TCP 1 Gbit/s",
        "TCP 4 Gbit/s",
        "UDP Gbit/s",
        "RTT p50 us",
        "RTT p99 us",
    ]
    table = figures_table("pod to pod (ratio to host-to-host)", columns, left={"backend", "path"})
    table.add_row("-", "host-to-host", *[f"{base[k]:.2f}" for k in ("tcp1_gbit_s", "tcp4_gbit_s", "udp_gbit_s")],
                  f"{base['rtt_p50_us']:.0f}", f"{base['rtt_p99_us']:.0f}")  # fmt: skip
    for backend, found in results["paths"].items():
        for path in ("within a host", "across hosts"):
            f = found[path]
            table.add_row(
                f"{backend} (MTU {found['pod_mtu']})", path,
                *[f"{f[k]:.2f} ({ratio(f[k], base[k])})" for k in ("tcp1_gbit_s", "tcp4_gbit_s", "udp_gbit_s")],
                f"{f['rtt_p50_us']:.0f} ({ratio(f['rtt_p50_us'], base['rtt_p50_us'])})",
                f"{f['rtt_p99_us']:.0f}",
            )  # fmt: skip
    console.print(table)
    console.print(f"[yellow]note:[/yellow] {results['note']}", highlight=False)


def chart(results: dict[str, Any], png: Path) -> None:
    plt = pyplot()
    figure, (lifecycle, tcp) = plt.subplots(1, 2, figsize=(12, 4.5))
    counts = sorted({c for per in results["lifecycle"].values() for c in per})
    width = 0.8 / max(1, len(results["lifecycle"]))
    for index, (key, per) in enumerate(results["lifecycle"].items()):
        xs = [i + index * width for i in range(len(counts))]
        lifecycle.bar(xs, [per.get(c, {}).get("up_s", 0) for c in counts], width, label=f"{key} up")
    lifecycle.set_xticks(
        [i + width / 2 for i in range(len(counts))], [f"{c} host(s)" for c in counts]
    )
    lifecycle.set_ylabel("seconds")
    lifecycle.set_title("up time")
    lifecycle.legend(fontsize=8)
    bar_panel_style(lifecycle, 0.1)
    names = list(results["paths"])
    base = results["baseline"]["tcp1_gbit_s"] or 1.0
    for index, path in enumerate(("within a host", "across hosts")):
        values = [results["paths"][b][path]["tcp1_gbit_s"] / base for b in names]
        tcp.bar([i + index * 0.4 for i in range(len(names))], values, 0.4, label=path)
    tcp.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="host-to-host")
    tcp.set_xticks([i + 0.2 for i in range(len(names))], names)
    tcp.set_ylabel("TCP (1 stream), ratio to host-to-host")
    tcp.set_title("pod to pod")
    tcp.legend(fontsize=8)
    bar_panel_style(tcp, 0.1)
    figure.suptitle(
        "one lab over several Docker hosts (sandbox: the hosts share this machine's CPUs)",
        fontsize=10,
    )
    figure.tight_layout()
    save(figure, png)
