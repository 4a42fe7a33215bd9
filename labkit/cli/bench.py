"""`labkit bench ...`: benchmarks that print figures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from labkit.cli.common import DEFAULT_TOPOLOGY, app, console, csv, friendly
from labkit.errors import UsageError

bench_app = typer.Typer(
    rich_markup_mode=None, no_args_is_help=True, help="Benchmarks that print figures."
)
app.add_typer(bench_app, name="bench")


@bench_app.command("up")
@friendly
def bench_up(
    topology: str = DEFAULT_TOPOLOGY,
    hundred: Annotated[
        bool, typer.Option(help="Also 100 nodes x 2 pods, with memory per node")
    ] = False,
    repeats: Annotated[
        int, typer.Option(min=1, help="Runs of the whole-process measures; the median")
    ] = 5,
    out: Annotated[Path, typer.Option(help="JSON results")] = Path("bench-results/up.json"),
) -> None:
    """up/down against the bare start of the same containers, as whole processes and at scale."""
    from labkit.bench.up import run

    run(topology, hundred=hundred, repeats=repeats, out=out, console=console())


@bench_app.command("manifests")
@friendly
def bench_manifests(
    documents: Annotated[int, typer.Option(min=4, help="Documents to load")] = 1000,
    repeats: Annotated[int, typer.Option(min=1, help="Rounds; the median is reported")] = 5,
    lab: Annotated[bool, typer.Option(help="Also apply a changed policy on a 3-node lab")] = True,
    out: Annotated[Path, typer.Option(help="JSON results")] = Path("bench-results/manifests.json"),
) -> None:
    """Loading + validating manifests against plain YAML; one policy apply on a lab."""
    from labkit.bench.manifests import run

    run(count=documents, repeats=repeats, with_lab=lab, out=out, console=console())


@bench_app.command("paths")
@friendly
def bench_paths(
    backends: Annotated[
        str, typer.Option(help="Comma-separated backends")
    ] = "vxlan,host-gw,udp,bgp",
    repeats: Annotated[int, typer.Option(min=1, help="Rounds; the median is reported")] = 3,
    seconds: Annotated[float, typer.Option(min=0.5, help="Length of each run")] = 2.0,
    out: Annotated[Path, typer.Option(help="JSON results")] = Path("bench-results/paths.json"),
    png: Annotated[Path, typer.Option(help="Bar chart")] = Path("bench-results/paths.png"),
) -> None:
    """Each backend's data paths against the underlay: iperf3 TCP/UDP, sockperf RTT."""
    from labkit.bench.paths import EXAMPLES, backend_problem, run

    names = csv(backends)
    problems = [problem for problem in map(backend_problem, names) if problem]
    if problems:
        shown = "; ".join(problems)
        raise UsageError(f"unknown backend(s): {shown} (e.g. {', '.join(EXAMPLES)})")
    run(backend_names=names, repeats=repeats, seconds=seconds, out=out, png=png, console=console())


@bench_app.command("services")
@friendly
def bench_services(
    sizes: Annotated[str, typer.Option(help="Comma-separated service counts")] = "100,1000,5000",
    modes: Annotated[
        str, typer.Option(help="Comma-separated: iptables, iptables-legacy, nftables")
    ] = "iptables,iptables-legacy,nftables",
    connections: Annotated[int, typer.Option(help="New TCP connections per latency sample")] = 400,
    out: Annotated[Path, typer.Option(help="JSON results (the PNG goes next to it)")] = Path(
        "bench-results/services.json"
    ),
    lb_rounds: Annotated[
        int, typer.Option(help="LoadBalancer takeovers per mode (L2, BGP); 0 skips that part")
    ] = 3,
) -> None:
    """Service proxy: full sync, one-endpoint change, rule count, first-packet latency;
    LoadBalancer takeover (L2, BGP) and first packet with Local vs Cluster policy.
    `--sizes ""` measures only the LoadBalancer part."""
    from labkit.bench.services import run

    run(
        [int(n) for n in csv(sizes)],
        csv(modes),
        connections=connections,
        out=out,
        console=console(),
        lb_rounds=lb_rounds,
    )


@bench_app.command("policy")
@friendly
def bench_policy(
    rules: Annotated[str, typer.Option(help="Comma-separated rule counts per node")] = "0,100,1000",
    seconds: Annotated[int, typer.Option(help="Length of each latency/throughput run")] = 2,
    repeats: Annotated[int, typer.Option(help="Rounds per rule count (medians reported)")] = 3,
    out: Annotated[Path, typer.Option(help="JSON results")] = Path("bench-results/policy.json"),
) -> None:
    """Pod-to-pod latency, throughput, connection setup and apply time vs policy rules."""
    from labkit.bench.policy import run

    counts = [int(n) for n in csv(rules)]
    run(counts, seconds=seconds, repeats=repeats, out=out, console=console())


@bench_app.command("entry")
@friendly
def bench_entry(
    topology: Annotated[str, typer.Argument(help="A topology with ingress and vrrp")] = "ingress",
    seconds: Annotated[float, typer.Option(min=1, help="Length of each wrk run")] = 3.0,
    connections: Annotated[int, typer.Option(min=1, help="wrk connections")] = 8,
    rounds: Annotated[int, typer.Option(min=1, help="wrk runs per path; the median")] = 3,
    failover: Annotated[bool, typer.Option(help="Also measure VRRP failover")] = True,
    repeats: Annotated[int, typer.Option(min=1, help="Failovers per case; the median")] = 3,
    out: Annotated[Path, typer.Option(help="JSON results")] = Path("bench-results/entry.json"),
    png: Annotated[Path, typer.Option(help="Chart")] = Path("bench-results/entry.png"),
) -> None:
    """Latency p50/p99 and req/s per entry path (pod, Service VIP, NodePort, ingress);
    failover time and failed requests per VRRP advertisement interval."""
    from labkit.bench.entry import run

    run(
        topology, seconds=seconds, connections=connections, rounds=rounds, failover=failover,
        repeats=repeats, out=out, png=png, console=console(),
    )  # fmt: skip


@bench_app.command("dns")
@friendly
def bench_dns(
    topology: Annotated[str, typer.Argument(help="A topology with services")] = "cluster-edge",
    count: Annotated[int, typer.Option(min=10, help="Queries per path")] = 2000,
    out: Annotated[Path, typer.Option(help="JSON results")] = Path("bench-results/dns.json"),
) -> None:
    """Cluster DNS query p50/p99 through the DNS Service (both pods; one killed) and direct."""
    from labkit.bench.dns import run

    run(topology, count=count, out=out, console=console())
