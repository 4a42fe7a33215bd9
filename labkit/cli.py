"""labkit: emulate a container platform's network model inside Docker.

Bring a lab up from a topology file, poke it, break it, measure it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import docker.errors
import typer
from rich.console import Console
from rich.table import Table

from labkit import state
from labkit.errors import LabkitError, UsageError

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
images_app = typer.Typer(no_args_is_help=True, help="Build the node image.")
pod_app = typer.Typer(no_args_is_help=True, help="Change the pods of a running lab.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print figures.")
app.add_typer(images_app, name="images")
app.add_typer(pod_app, name="pod")
app.add_typer(bench_app, name="bench")

console = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_TOPOLOGY = "default"


def friendly(function: F) -> F:
    """Print a LabkitError as one clear message and exit with its code."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except LabkitError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except docker.errors.DockerException as exc:
            err.print(f"[red]error from the Docker engine:[/red] {exc}", highlight=False)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _only_lab(name: str | None, runtime: Any = None) -> str:
    """The lab named, or the only one up."""
    if name:
        return name
    from labkit.runtime.docker import DockerRuntime

    running = sorted((runtime or DockerRuntime()).lab_names() & set(state.known_labs()))
    if len(running) == 1:
        return running[0]
    if not running:
        raise UsageError("no lab is up (labkit up [TOPOLOGY])")
    raise UsageError(f"several labs are up, name one: {', '.join(running)}")


def _attach(name: str | None) -> Any:
    from labkit.lab import Lab
    from labkit.runtime.docker import DockerRuntime

    runtime = DockerRuntime()  # one engine connection for the lookup and the lab
    return Lab.attach(_only_lab(name, runtime), runtime)


def _csv(text: str) -> list[str]:
    """`a, b,c` -> ["a", "b", "c"] (options that take lists)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _lab_of_endpoint(target: str, lab_name: str | None) -> tuple[Any, Any]:
    lab = _attach(lab_name)
    return lab, lab.endpoint(target)


# -- up / down / status --------------------------------------------------------


@app.command()
@friendly
def up(
    topology: Annotated[str, typer.Argument(help="A name under topologies/ or a path")] = DEFAULT_TOPOLOGY,
    name: Annotated[str | None, typer.Option(help="Lab name (default: the topology's)")] = None,
) -> None:
    """Bring a lab up and print its nodes, pods, addresses and entry points."""
    from labkit.lab import Lab
    from labkit.topology.loader import load_topology, resolve_topology_path

    path = resolve_topology_path(topology)
    parsed = load_topology(path)
    with console.status(f"bringing up {parsed.name}") as status:
        lab = Lab.up(parsed, name=name, progress=lambda message: status.update(message))
        lab.source = str(path)
        lab.save()
    console.print(f"[green]lab {lab.name} is up[/green] in {lab.timings['up']:.1f} s")
    _print_lab(lab)
    console.print("\nnext:")
    for line in next_steps(lab):
        console.print(f"  [bold]{line}[/bold]", highlight=False)


def next_steps(lab: Any) -> list[str]:
    """Commands worth typing next, with this lab's own names and addresses."""
    steps = []
    pods = lab.pods()
    if pods:
        client = next((p for p in pods if not p.spec.run), pods[0])
        server = next((p for p in pods if p.spec.run and p.node.name != client.node.name), None)
        if server is not None:
            steps.append(f"labkit exec {client.name} -- curl -s {server.ip}:8080/   # {server.name} on {server.node.name}")
        for name in list(lab.topology.services)[:1]:
            steps.append(f"labkit exec {client.name} -- curl -s {name}:{lab.topology.services[name].ports[0].port}/")
    steps += [f"labkit check {lab.name}", f"labkit shell {lab.node(next(iter(lab.topology.nodes))).name}", f"labkit down {lab.name}"]
    return steps


@app.command()
@friendly
def down(
    name: Annotated[str | None, typer.Argument(help="Lab name")] = None,
    all_labs: Annotated[bool, typer.Option("--all", help="Remove every labkit object on this engine")] = False,
) -> None:
    """Remove a lab (idempotent), or with --all every labelled lab and orphan."""
    from labkit.runtime.docker import DockerRuntime

    runtime = DockerRuntime()
    if all_labs:
        names = runtime.lab_names() | set(state.known_labs())
    elif name:
        names = {name}
    else:
        names = {_only_lab(None)}
    for lab in sorted(names):
        removed = runtime.remove_lab(lab)
        state.forget(lab)
        console.print(f"removed lab {lab} ({removed} objects)")
    if not names:
        console.print("nothing to remove")


def status_document(lab: Any) -> dict[str, Any]:
    """What `labkit status --json` prints: stable keys for scripts."""
    document: dict[str, Any] = {
        "name": lab.name,
        "source": lab.source,
        "backend": lab.topology.cluster.backend,
        "networks": {k: str(v) for k, v in lab.addresses.underlay_subnets.items()},
        "nodes": [
            {
                "name": node.name,
                "container": node.container,
                "roles": node.roles,
                "ips": {k: str(v) for k, v in node.ips.items()},
                "ip": str(node.ip),
                "pod_subnet": str(lab.addresses.pod_subnets.get(node.name, "")) or None,
            }
            for node in lab.nodes()
        ],
        "pods": [
            {
                "name": pod.name,
                "node": pod.node.name,
                "namespace": pod.namespace,
                "ip": str(pod.ip),
                "labels": pod.labels,
            }
            for pod in lab.pods()
        ],
    }
    for layer in lab.active_layers():
        describe = getattr(layer, "describe", None)
        if describe is not None:
            document.update(describe(lab))
    return document


def _print_lab(lab: Any) -> None:
    document = status_document(lab)
    nodes = Table(title=f"lab {lab.name}: nodes", title_justify="left")
    for column in ("node", "underlay IPs", "pod subnet", "roles"):
        nodes.add_column(column)
    for node in document["nodes"]:
        ips = ", ".join(f"{ip} ({net})" for net, ip in node["ips"].items())
        nodes.add_row(node["name"], ips, node["pod_subnet"] or "-", ",".join(node["roles"]) or "-")
    console.print(nodes)
    if document["pods"]:
        pods = Table(title="pods", title_justify="left")
        for column in ("pod", "node", "namespace", "IP", "labels"):
            pods.add_column(column)
        for pod in document["pods"]:
            labels = ",".join(f"{k}={v}" for k, v in pod["labels"].items())
            pods.add_row(pod["name"], pod["node"], pod["namespace"], pod["ip"], labels or "-")
        console.print(pods)
    if document.get("services"):
        _print_services(document)
    for key, value in document.items():
        if key in ("name", "source", "backend", "networks", "nodes", "pods", "services", "service_proxy"):
            continue
        console.print(f"[bold]{key}[/bold]: {json.dumps(value, indent=1)}")


def _print_services(document: dict[str, Any]) -> None:
    """Services: VIP, ports (node ports), endpoints, and why one has none."""
    proxy = document.get("service_proxy") or {}
    title = f"services (proxy mode {proxy.get('mode')}, DNS {proxy.get('dns') or 'off'})"
    table = Table(title=title, title_justify="left")
    for column in ("service", "VIP", "ports", "endpoints"):
        table.add_column(column)
    for service in document["services"]:
        ports = ", ".join(
            f"{p['port']}/{p['protocol']}->{p['target_port']}"
            + (f" (node {p['node_port']})" if p["node_port"] else "")
            for p in service["ports"]
        )
        endpoints = ", ".join(f"{e['pod']} {e['ip']}" for e in service["endpoints"])
        notes = "; ".join(service["notes"])
        table.add_row(service["name"], service["vip"], ports, endpoints or f"[yellow]none: {notes}[/yellow]")
    console.print(table)


@app.command()
@friendly
def status(
    name: Annotated[str | None, typer.Argument(help="Lab name")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable")] = False,
) -> None:
    """Nodes with their underlay IPs, pods with their node and IP."""
    lab = _attach(name)
    if as_json:
        print(json.dumps(status_document(lab), indent=2))
    else:
        _print_lab(lab)


# -- poking ---------------------------------------------------------------------


@app.command(name="exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@friendly
def exec_(
    target: Annotated[str, typer.Argument(help="A node or a pod")],
    command: Annotated[list[str], typer.Argument(help="The command, after --")],
    lab_name: Annotated[str | None, typer.Option("--lab", help="Lab name")] = None,
) -> None:
    """Run a command on a node or in a pod's network namespace."""
    import shlex

    _, endpoint = _lab_of_endpoint(target, lab_name)
    result = endpoint.exec(shlex.join(command), check=False)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    raise typer.Exit(result.exit_code)


@app.command()
@friendly
def shell(
    target: Annotated[str, typer.Argument(help="A node or a pod")],
    lab_name: Annotated[str | None, typer.Option("--lab", help="Lab name")] = None,
) -> None:
    """An interactive shell on a node or in a pod."""
    from labkit.handles import PodHandle

    _, endpoint = _lab_of_endpoint(target, lab_name)
    inner = ["ip", "netns", "exec", endpoint.name, "bash"] if isinstance(endpoint, PodHandle) else ["bash"]
    # An interactive TTY is the docker CLI's job; the SDK has no terminal client.
    os.execvp("docker", ["docker", "exec", "-it", endpoint.node.container, *inner])


@app.command()
@friendly
def check(name: Annotated[str | None, typer.Argument(help="Lab name")] = None) -> None:
    """The pod-by-pod reachability matrix (ping, with RTTs)."""
    from labkit import expect

    lab = _attach(name)
    pods = lab.pods()
    matrix = expect.reachability_matrix(pods, pods)
    console.print(matrix.render(), highlight=False)
    failed = [cell for cell in matrix.cells.values() if not cell.ok]
    console.print(f"{len(matrix.cells) - len(failed)}/{len(matrix.cells)} paths reachable")
    if failed:
        raise typer.Exit(1)


# -- images, doctor, schema ---------------------------------------------------------


@images_app.command("build")
@friendly
def images_build(force: Annotated[bool, typer.Option(help="Rebuild even if up to date")] = False) -> None:
    """Build the node image (and a local Debian base when none can be pulled)."""
    from labkit.runtime.docker import connect
    from labkit.runtime.images import build_image

    tag = build_image(connect(), "node", force=force, progress=lambda line: console.print(line, highlight=False))
    console.print(f"node image: {tag}")


@app.command()
@friendly
def doctor(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """What this host can run: engine, node mode, kernel features."""
    from labkit.runtime.features import diagnose

    report = diagnose()
    if as_json:
        print(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        if isinstance(value, dict):
            console.print(f"[bold]{key}[/bold]")
            for feature, detail in value.items():
                mark = "[green]yes[/green]" if detail.get("ok") else "[red]no[/red]"
                console.print(f"  {feature:<14} {mark}  {detail.get('detail', '')}", highlight=False)
        else:
            console.print(f"[bold]{key}[/bold]: {value}", highlight=False)


@app.command()
def schema() -> None:
    """The topology file's JSON schema (for editors)."""
    from labkit.topology.model import Topology

    print(json.dumps(Topology.model_json_schema(), indent=2))


@app.command()
@friendly
def validate(topology: Annotated[str, typer.Argument(help="A name under topologies/ or a path")]) -> None:
    """Check a topology file without creating anything."""
    from labkit.topology.loader import load_topology

    parsed = load_topology(topology)
    console.print(f"{parsed.name}: ok ({len(parsed.nodes)} nodes, {len(parsed.pods)} pods)")


# -- pods -----------------------------------------------------------------------------


@pod_app.command("add")
@friendly
def pod_add(
    name: str,
    node: Annotated[str, typer.Option(help="The node to run it on")],
    label: Annotated[list[str] | None, typer.Option(help="key=value, repeatable")] = None,
    run: Annotated[list[str] | None, typer.Option(help="A container's command, repeatable")] = None,
    namespace: str = "default",
    lab_name: Annotated[str | None, typer.Option("--lab")] = None,
) -> None:
    """Add a pod to a running lab; services follow."""
    lab = _attach(lab_name)
    labels = dict(item.split("=", 1) for item in label or [])
    pod = lab.add_pod(name, {"node": node, "labels": labels, "run": run or [], "namespace": namespace})
    console.print(f"pod {pod.name} on {node}: {pod.ip}")
    _print_service_sync(lab)


@pod_app.command("delete")
@friendly
def pod_delete(name: str, lab_name: Annotated[str | None, typer.Option("--lab")] = None) -> None:
    """Delete a pod; services follow."""
    lab = _attach(lab_name)
    lab.delete_pod(name)
    console.print(f"pod {name} deleted")
    _print_service_sync(lab)


@pod_app.command("move")
@friendly
def pod_move(
    name: str,
    node: Annotated[str, typer.Argument(help="The node to move it to")],
    lab_name: Annotated[str | None, typer.Option("--lab")] = None,
) -> None:
    """Recreate a pod on another node with a new IP; services, DNS, floating IPs follow."""
    lab = _attach(lab_name)
    old_ip = lab.pod(name).ip
    pod = lab.move_pod(name, node)
    console.print(f"pod {name} moved to {node}: {old_ip} -> {pod.ip}")


@pod_app.command("kill")
@friendly
def pod_kill(name: str, lab_name: Annotated[str | None, typer.Option("--lab")] = None) -> None:
    """Kill a pod's processes (its namespace and IP stay)."""
    lab = _attach(lab_name)
    lab.pod(name).kill()
    console.print(f"pod {name}: processes killed")
    _print_service_sync(lab)


@pod_app.command("restart")
@friendly
def pod_restart(name: str, lab_name: Annotated[str | None, typer.Option("--lab")] = None) -> None:
    """Restart a pod's processes."""
    lab = _attach(lab_name)
    lab.pod(name).restart()
    console.print(f"pod {name}: restarted")
    _print_service_sync(lab)


@pod_app.command("label")
@friendly
def pod_label(
    name: str,
    labels: Annotated[list[str], typer.Argument(help="key=value ... (replaces the labels)")],
    lab_name: Annotated[str | None, typer.Option("--lab")] = None,
) -> None:
    """Replace a pod's labels; services follow."""
    lab = _attach(lab_name)
    lab.set_labels(name, dict(item.split("=", 1) for item in labels))
    console.print(f"pod {name}: labels set")
    _print_service_sync(lab)


def _print_service_sync(lab: Any) -> None:
    """The service proxy's programming latency for the change just made (when it has services)."""
    from labkit.layers.services import last_sync

    summary = last_sync(lab) if lab.topology.services else None
    if summary:
        console.print(
            f"services: rules programmed on {len(summary['per_node'])} node(s) in "
            f"{summary['seconds'] * 1000:.0f} ms ({summary['kind']} sync)"
        )


# -- benchmarks ---------------------------------------------------------------------


@bench_app.command("up")
@friendly
def bench_up(
    topology: str = DEFAULT_TOPOLOGY,
    big: Annotated[bool, typer.Option(help="Also 20 nodes x 5 pods")] = True,
    out: Annotated[Path, typer.Option(help="JSON results")] = Path("bench-results/up.json"),
) -> None:
    """Wall time of up/down vs bare containers; VXLAN vs underlay throughput."""
    from labkit.bench.up import run

    run(topology, big=big, out=out, console=console)


@bench_app.command("paths")
@friendly
def bench_paths(
    backends: Annotated[str, typer.Option(help="Comma-separated backends")] = "vxlan,host-gw,udp,bgp",
    repeats: Annotated[int, typer.Option(min=1, help="Rounds; the median is reported")] = 3,
    seconds: Annotated[float, typer.Option(min=0.5, help="Length of each run")] = 2.0,
    out: Annotated[Path, typer.Option(help="JSON results")] = Path("bench-results/paths.json"),
    png: Annotated[Path, typer.Option(help="Bar chart")] = Path("bench-results/paths.png"),
) -> None:
    """Each backend's data paths against the underlay: iperf3 TCP/UDP, sockperf RTT."""
    from labkit.bench.paths import BACKENDS, run

    names = _csv(backends)
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown:
        raise UsageError(f"unknown backend(s) {', '.join(unknown)} (known: {', '.join(BACKENDS)})")
    run(backend_names=names, repeats=repeats, seconds=seconds, out=out, png=png, console=console)


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
) -> None:
    """Service proxy: full sync, one-endpoint change, rule count, first-packet latency."""
    from labkit.bench.services import run

    run(
        [int(n) for n in _csv(sizes)],
        _csv(modes),
        connections=connections,
        out=out,
        console=console,
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

    counts = [int(n) for n in _csv(rules)]
    run(counts, seconds=seconds, repeats=repeats, out=out, console=console)


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
        repeats=repeats, out=out, png=png, console=console,
    )  # fmt: skip


from labkit.cli_faults import fault_app  # noqa: E402  (it uses the helpers above)

app.add_typer(fault_app, name="fault")


def main() -> None:  # pragma: no cover
    app()
