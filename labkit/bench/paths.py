"""`labkit bench paths`: what each pod-network backend costs, measured here.

Each backend runs on the same layout (topologies/backend-<backend>.yaml: two
nodes on one underlay, two pods per node), one lab after the other; a name
`<backend>@<mtu>` runs it on an underlay of that MTU (jumbo frames), and
`<backend>@macvlan` on a macvlan underlay (no host bridge or host netfilter
between the nodes, as on a physical segment), `<backend>@ptp` with pods wired
by CNI ptp (a routed veth per pod, no pod bridge). Each lab
measures its two pod paths:

- same node: pod to pod through the node (its bridge, or ptp's routes);
- cross node: pod to pod through the backend;

against the baseline: node-1 to node-2 over the underlay, which no backend
touches, measured in every round of every lab.

Per path: iperf3 TCP with 1 and with 4 streams, iperf3 UDP at the path's MTU
(unlimited rate: what arrives, and the loss), and request/response latency
(sockperf UDP ping-pong, round trip p50/p99). Each run lasts `seconds`; the
figures are the median of `repeats` rounds, each also as a ratio of the
baseline's.

Each round also measures TCP on `bench.limits`' references (bare veth, bare
kernel VXLAN, node to node over VXLAN, a pod without a bridge) and the cross-node
path with each piece changed; `bench.ladder` pairs them: where throughput goes.

Goals (issue 14), printed, not asserted: `ladder.GOALS`, and udp well below
vxlan. iperf3/sockperf run at `limits.PRIORITY`: other work skews them less.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import statistics
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from labkit import expect
from labkit.bench import ladder, limits
from labkit.bench.report import figures_table, lab_name, write_json
from labkit.core import probes
from labkit.core.endpoint import Endpoint
from labkit.dataplane import backends
from labkit.dataplane.script import q
from labkit.errors import FeatureMissing, LabkitError
from labkit.lab import Lab
from labkit.layers.convergence import check_pod_network
from labkit.runtime.docker import DockerRuntime
from labkit.topology import Topology, load_topology
from labkit.topology.cluster_model import Network

BASES = ("vxlan", "host-gw", "udp", "bgp")  # each has topologies/backend-<base>.yaml
# What a name may add after `@`, joined by `+`: an MTU, the macvlan underlay, ptp pods.
VARIANTS = ("<mtu>", "macvlan", "ptp")
EXAMPLES = ("vxlan@9000", "host-gw@macvlan", "bgp@ptp", "vxlan@macvlan+9000+ptp")
PATHS = {
    "baseline": "node-1 -> node-2 over the underlay",
    "same-node": "client-1 -> web-1 through the node (its bridge, or ptp routes)",
    "cross-node": "client-1 -> web-2 through the backend",
}
SOCKPERF_PORT = 11111
IPERF_PORT = 5301
PIECES_IN = frozenset({"vxlan", "host-gw"})  # labs also measured with each piece changed
# udp is judged against vxlan; the other goals are `ladder.GOALS`.
UDP_VS_VXLAN = 0.5  # "well below": at most half of vxlan's figure


@dataclass(frozen=True)
class Figures:
    """One path's figures (one run, or the median of several)."""

    tcp1_gbit_s: float
    tcp4_gbit_s: float
    udp_gbit_s: float  # what the receiver got
    udp_loss_pct: float
    rtt_p50_us: float
    rtt_p99_us: float
    # What the TCP runs cost: Gbit per CPU-second of sender + receiver (limits.per_cpu_second).
    tcp1_gbit_per_cpu_s: float = 0.0
    tcp4_gbit_per_cpu_s: float = 0.0


THROUGHPUT = ("tcp1_gbit_s", "tcp4_gbit_s", "udp_gbit_s")
LATENCY = ("rtt_p50_us", "rtt_p99_us")


def median(samples: list[Figures]) -> Figures:
    return Figures(
        **{f.name: statistics.median(getattr(s, f.name) for s in samples) for f in fields(Figures)}
    )


def ratios(figures: Figures, baseline: Figures) -> dict[str, float]:
    """Each throughput and latency figure over the baseline's (loss has none)."""
    return {
        name: getattr(figures, name) / getattr(baseline, name)
        for name in (*THROUGHPUT, *LATENCY)
        if getattr(baseline, name)
    }


# -- measuring one path -------------------------------------------------------------

_PERCENTILE = re.compile(r"percentile (\d+\.\d+) =\s+([\d.]+)")


def parse_sockperf(output: str) -> dict[str, float]:
    """{"50.000": usec, "99.000": usec, ...} from `sockperf pp` output."""
    found = {key: float(value) for key, value in _PERCENTILE.findall(output)}
    if "50.000" not in found or "99.000" not in found:
        raise LabkitError(f"sockperf printed no percentiles: {output.strip()[-400:]}")
    return found


def rtt_percentiles(client: Endpoint, server: Endpoint, seconds: float) -> tuple[float, float]:
    """UDP ping-pong round trips (p50, p99) in µs; a sockperf server runs in `server`."""
    pidfile = f"/tmp/sockperf-{server.name}.pid"
    inner = f"echo $$ > {pidfile}; exec sockperf sr -i {server.ip} -p {SOCKPERF_PORT}"
    server.exec(f"setsid -f sh -c {q(inner)} > /tmp/sockperf-{server.name}.log 2>&1 < /dev/null")
    try:
        expect.eventually(
            lambda: _listening(server, SOCKPERF_PORT), within=5, every=0.05, what="sockperf server"
        )
        result = client.exec(
            f"sockperf pp -i {server.ip} -p {SOCKPERF_PORT} -t {seconds:g} --full-rtt",
            check=False,
            timeout=seconds + 15,
        )
        found = parse_sockperf(result.output)
        return found["50.000"], found["99.000"]
    finally:
        server.exec(f"kill $(cat {pidfile}) 2>/dev/null; rm -f {pidfile}", check=False)


def _listening(endpoint: Endpoint, port: int) -> None:
    assert f":{port} " in endpoint.exec(f"ss -Hlun sport = :{port}").stdout


def udp_goodput(result: probes.IperfResult) -> tuple[float, float]:
    """(Gbit/s received, loss %) of a UDP iperf3 run."""
    received = result.raw.get("end", {}).get("sum_received")
    if received:
        return received["bits_per_second"] / 1e9, float(received.get("lost_percent", 0.0))
    loss = result.lost_percent or 0.0
    return result.gbit_per_s * (1 - loss / 100), loss


def measure_path(client: Endpoint, server: Endpoint, mtu: int, seconds: float) -> Figures:
    def iperf(**options: Any) -> probes.IperfResult:
        return probes.iperf(client, server, seconds=seconds, port=IPERF_PORT, **options)

    tcp1, tcp4 = iperf(), iperf(streams=4)
    # Datagrams that fill the path's MTU exactly: IPv4 20 + UDP 8 bytes of headers.
    udp_gbit, loss = udp_goodput(iperf(udp=True, length=mtu - 28))
    # Ping-pong gathers tens of thousands of round trips a second: half the
    # run length is plenty for a p99, and keeps the whole bench near 5 minutes.
    p50 = p99 = 0.0  # sockperf found no valid observation twice (a starved host)
    for length in (max(1.0, seconds / 2), max(2.0, seconds)):
        with contextlib.suppress(LabkitError):
            p50, p99 = rtt_percentiles(client, server, length)
            break
    return Figures(
        tcp1.gbit_per_s, tcp4.gbit_per_s, udp_gbit, loss, p50, p99,
        limits.per_cpu_second(tcp1), limits.per_cpu_second(tcp4),
    )  # fmt: skip


# -- one backend -------------------------------------------------------------------------


def backend_problem(name: str) -> str | None:
    """Why `name` names no backend variant the bench can build (None: it does)."""
    base, _, variant = name.partition("@")
    if base not in BASES:
        return f"{name!r}: no backend {base!r} (one of {', '.join(BASES)})"
    for token in variant.split("+") if variant else ():
        if token.isdigit():
            try:
                Network(mtu=int(token))
            except ValidationError:
                return f"{name!r}: MTU {token} is outside 68..65535"
        elif token not in VARIANTS:
            return f"{name!r}: {token!r} is none of {', '.join(VARIANTS)}"
    return None


def backend_topology(name: str) -> Topology:
    """backend-<backend>.yaml; `<backend>@<mtu>`: every network at that MTU (jumbo
    frames); `<backend>@macvlan`: every network a macvlan (no host bridge);
    `<backend>@ptp`: pods wired by CNI ptp (no pod bridge); joined: `@macvlan+9000`."""
    backend, _, variant = name.partition("@")
    topology = load_topology(f"backend-{backend}", search_from=Path(__file__).resolve().parent)
    if not variant:
        return topology
    change: dict[str, object] = {}
    cluster = topology.cluster
    for token in variant.split("+"):
        if token == "ptp":
            cluster = cluster.model_copy(update={"cni_plugin": token})
        else:
            change.update({"mtu": int(token)} if token.isdigit() else {"driver": token})
    networks = {n: net.model_copy(update=change) for n, net in topology.networks.items()}
    suffix = variant.replace("+", "-")
    return topology.model_copy(
        update={"name": f"{topology.name}-{suffix}", "networks": networks, "cluster": cluster}
    )


def bench_backend(
    backend: str,
    runtime: DockerRuntime,
    *,
    repeats: int,
    seconds: float,
    console: Console,
) -> dict[str, Any]:
    """Samples of one backend's lab: its pod paths, the baseline, the references, the pieces."""
    topology = backend_topology(backend)
    try:
        check_pod_network(topology)
    except FeatureMissing as exc:
        console.print(f"[yellow]{backend}: skipped[/yellow]: {exc}")
        return {"skipped": str(exc)}
    name = lab_name(topology.name)
    runtime.remove_lab(name)  # a leftover of an interrupted run
    started = time.perf_counter()
    lab = Lab.up(topology, runtime=runtime, name=name)
    up_s = time.perf_counter() - started
    pod_mtu, underlay_mtu = backends.pod_mtu(topology), backends.underlay_mtu(topology)

    def fast(name: str) -> Endpoint:
        return limits.Prioritized(lab.pod(name))

    endpoints: dict[str, tuple[Endpoint, Endpoint, int]] = {
        "baseline": (
            limits.Prioritized(lab.node("node-1")), limits.Prioritized(lab.node("node-2")),
            underlay_mtu,
        ),
        "same-node": (fast("client-1"), fast("web-1"), pod_mtu),
        "cross-node": (fast("client-1"), fast("web-2"), pod_mtu),
    }  # fmt: skip
    samples: dict[str, list[Figures]] = {path: [] for path in endpoints}
    tcp: dict[str, list[dict[str, float]]] = {}
    try:
        references = limits.references(lab, ladder.base_backend(backend))
        for round_ in range(1, repeats + 1):
            console.print(f"  {backend}: round {round_}/{repeats}", highlight=False)
            for path, (client, server, mtu) in endpoints.items():
                samples[path].append(measure_path(client, server, mtu, seconds))
                tcp.setdefault(path, []).append(ladder.metrics_of(samples[path][-1]))
            for path, (client, server) in references.items():
                tcp.setdefault(path, []).append(
                    limits.measure_tcp(client, server, seconds, IPERF_PORT)
                )
            client, server, _ = endpoints["cross-node"]
            for piece in limits.PIECES if backend in PIECES_IN else ():
                limits.change(lab, piece.apply)
                try:
                    figures = limits.measure_tcp(client, server, seconds, IPERF_PORT)
                finally:
                    limits.change(lab, piece.revert)
                tcp.setdefault(ladder.PIECE_PREFIX + piece.name, []).append(figures)
    finally:
        lab.down()
    return {"pod_mtu": pod_mtu, "underlay_mtu": underlay_mtu, "up_s": up_s, "samples": samples,
            "tcp": tcp}  # fmt: skip


def summarize(measured: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Medians and ratios from the labs' samples; the baseline pooled over labs."""
    baseline_samples = [
        s for m in measured.values() for s in m.get("samples", {}).get("baseline", [])
    ]
    baseline = median(baseline_samples)
    result: dict[str, Any] = {
        "baseline": {
            "figures": asdict(baseline),
            "samples": [asdict(s) for s in baseline_samples],
        },
        "backends": {},
    }
    for backend, found in measured.items():
        if "samples" not in found:
            result["backends"][backend] = found
            continue
        pod_paths = {path: median(found["samples"][path]) for path in ("same-node", "cross-node")}
        tcp = found.get("tcp") or {
            path: [ladder.metrics_of(s) for s in found["samples"][path]]
            for path in found["samples"]
        }
        result["backends"][backend] = {
            "pod_mtu": found["pod_mtu"],
            "underlay_mtu": found.get("underlay_mtu", backends.UNDERLAY_MTU),
            "up_s": found["up_s"],
            "ladder": ladder.ladder(tcp),
            "tcp_medians": {
                path: {m: statistics.median(s[m] for s in runs) for m in ladder.METRICS}
                for path, runs in tcp.items()
            },
            "tcp_samples": tcp,
            "paths": {path: asdict(figures) for path, figures in pod_paths.items()},
            "ratios": {path: ratios(figures, baseline) for path, figures in pod_paths.items()},
            "samples": {path: [asdict(s) for s in found["samples"][path]] for path in pod_paths},
        }
    return result


# -- the whole bench --------------------------------------------------------------------------


def goal_notes(results: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """(goal, met, figure) for each backend that ran, on both TCP figures."""
    ran = {b: r for b, r in results["backends"].items() if "paths" in r}
    notes = ladder.goal_notes(ran)
    for metric, label in (("tcp1_gbit_s", "TCP x1"), ("tcp4_gbit_s", "TCP x4")):
        if "udp" in ran and "vxlan" in ran:
            udp = ran["udp"]["paths"]["cross-node"][metric]
            vxlan = ran["vxlan"]["paths"]["cross-node"][metric]
            notes.append(
                (f"udp cross-node {label} well below vxlan (<= {UDP_VS_VXLAN:g}x)",
                 udp <= UDP_VS_VXLAN * vxlan, f"{udp / vxlan:.2f}x vxlan")
            )  # fmt: skip
    return notes


def host_facts(runtime: DockerRuntime) -> dict[str, Any]:
    info = runtime.client.info()
    return {
        "kernel": info.get("KernelVersion"),
        "cpus": info.get("NCPU"),
        "engine": f"Docker {info.get('ServerVersion')}",
        "python": platform.python_version(),
    }


def busy_note(results: dict[str, Any]) -> str:
    """Why figures may miss their goals: other work on the CPUs during the run.

    The load averages (this machine's, where the engine runs here) are measured,
    not guessed; spread between rounds shows in the JSON's samples.
    """
    cpus = results["host"].get("cpus") or os.cpu_count() or 1
    loads = results["host"].get("load_1min", [])
    if not loads or max(loads) <= cpus:
        return ""
    return (
        f"the host was busy during the run (1-minute load average up to {max(loads):.1f} on "
        f"{cpus} CPUs, beyond this bench's own iperf3/sockperf pair): other processes took "
        "CPU time from the paths under test, so ratios vary between rounds (see the samples "
        "in the JSON); rerun on an idle host for figures to compare with the goals"
    )


def run(
    *,
    backend_names: list[str],
    repeats: int,
    seconds: float,
    out: Path,
    png: Path | None,
    console: Console,
) -> dict[str, Any]:
    runtime = DockerRuntime()
    started = time.perf_counter()
    loads = [os.getloadavg()[0]]
    measured: dict[str, dict[str, Any]] = {}
    for backend in backend_names:
        console.print(f"[bold]{backend}[/bold]: bringing up backend-{backend}")
        try:
            measured[backend] = bench_backend(
                backend, runtime, repeats=repeats, seconds=seconds, console=console
            )
        except LabkitError as exc:  # one lab's failure costs that lab, not the run
            console.print(f"[red]{backend}: failed[/red]: {exc}", highlight=False)
            measured[backend] = {"skipped": f"failed: {str(exc)[:300]}"}
        loads.append(os.getloadavg()[0])
    if not any("samples" in m for m in measured.values()):
        raise LabkitError("no backend could run here: " + "; ".join(
            f"{b}: {m.get('skipped')}" for b, m in measured.items()
        ))  # fmt: skip
    results: dict[str, Any] = {
        "settings": {"repeats": repeats, "seconds": seconds, "paths": PATHS},
        "host": {**host_facts(runtime), "load_1min": loads},
        **summarize(measured),
    }
    results["goals"] = [
        {"goal": goal, "met": met, "figure": figure} for goal, met, figure in goal_notes(results)
    ]
    results["wall_s"] = time.perf_counter() - started
    results["note"] = busy_note(results) if not all(g["met"] for g in results["goals"]) else ""
    show(results, console)
    write_json(out, results, newline=False)
    console.print(f"written: {out}")
    if png is not None:
        from labkit.bench.paths_chart import draw

        draw(results, png)
        console.print(f"written: {png}")
    return results


def _cell(figures: dict[str, float], ratio: dict[str, float] | None, name: str) -> str:
    digits = 1 if name in LATENCY else 2
    value = f"{figures[name]:.{digits}f}"
    return value if ratio is None else f"{value} {ratio[name]:.2f}x"


def show(results: dict[str, Any], console: Console) -> None:
    settings = results["settings"]
    table = figures_table(
        f"labkit bench paths: median of {settings['repeats']} x {settings['seconds']:g} s "
        "(Nx: ratio to the baseline)",
        ("backend", "path", "TCP x1\nGbit/s", "TCP x4\nGbit/s", "UDP Gbit/s\n(loss)",
         "RTT p50\nµs", "RTT p99\nµs"),
        left=("backend", "path"),
        no_wrap=True,
        title_justify="left",
    )  # fmt: skip

    def add(backend: str, path: str, figures: dict[str, float], ratio: dict[str, float] | None,
            last: bool = False) -> None:  # fmt: skip
        udp = f"{figures['udp_gbit_s']:.2f} ({figures['udp_loss_pct']:.0f}%)"
        if ratio is not None:
            udp += f" {ratio['udp_gbit_s']:.2f}x"
        cells = [_cell(figures, ratio, name) for name in (*THROUGHPUT[:2], *LATENCY)]
        table.add_row(backend, path, cells[0], cells[1], udp, cells[2], cells[3], end_section=last)

    add("(any)", "baseline", results["baseline"]["figures"], None, last=True)
    for backend, result in results["backends"].items():
        if "paths" not in result:
            continue
        label = f"{backend} MTU {result['pod_mtu']}"
        add(label, "same-node", result["paths"]["same-node"], result["ratios"]["same-node"])
        add("", "cross-node", result["paths"]["cross-node"], result["ratios"]["cross-node"], True)
    wide = Console(width=max(console.width, 112), file=console.file)
    wide.print(table)
    ladder.show(results["backends"], console)
    for backend, result in results["backends"].items():
        if "skipped" in result:
            console.print(f"{backend}: skipped: {result['skipped']}", highlight=False)
    for goal in results["goals"]:
        mark = "[green]met[/green]" if goal["met"] else "[red]MISSED[/red]"
        console.print(f"goal {goal['goal']}: {goal['figure']} {mark}", highlight=False)
    if results.get("note"):
        console.print(f"note: {results['note']}", highlight=False)
    console.print(f"whole bench: {results['wall_s']:.0f} s", highlight=False)
