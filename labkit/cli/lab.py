"""`labkit up`, `down`, `status`: a lab's lifecycle and what it is made of."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from labkit.cli.common import (
    DEFAULT_TOPOLOGY,
    PROCESS_STARTED,
    app,
    attach_lab,
    console,
    escape,
    friendly,
    only_lab,
    print_notes,
    progress_line,
    runtime_from_state,
    runtime_of,
)
from labkit.cli.hosts import describe_with_hosts

if TYPE_CHECKING:
    from labkit.runtime.base import Runtime


@app.command()
@friendly
def up(
    topology: Annotated[
        str, typer.Argument(help="A name under topologies/ or a path")
    ] = DEFAULT_TOPOLOGY,
    name: Annotated[str | None, typer.Option(help="Lab name (default: the topology's)")] = None,
    profile: Annotated[bool, typer.Option("--profile", help="Print where the time went")] = False,
    files: Annotated[
        list[str] | None,
        typer.Option(
            "-f", "--filename", help="Kubernetes manifests: file, directory or - (repeatable)"
        ),
    ] = None,
    kube_version: Annotated[
        str | None, typer.Option(help="Kubernetes version the manifests are checked against")
    ] = None,
    hosts: Annotated[
        str | None,
        typer.Option(help="Hosts file: spread the lab over its Docker hosts (or $LABKIT_HOSTS)"),
    ] = None,
) -> None:
    """Bring a lab up and print its nodes, pods, addresses and entry points."""
    from labkit.lab import Lab
    from labkit.runtime.profiled import ProfiledRuntime
    from labkit.runtime.select import hosts_file, runtime_for
    from labkit.topology.loader import load_topology, resolve_topology_path

    path = resolve_topology_path(topology)
    parsed = load_topology(path)
    given = parsed
    if files or kube_version:  # checked before anything is created
        from labkit.topology.kube.manifests import add_manifests

        given = add_manifests(parsed, files or [], kube_version, stdin=sys.stdin).topology
    print_notes(given.manifest_notes if files or kube_version else parsed.manifest_notes)
    runtime = runtime_for(hosts_file(hosts), parsed, source=str(path))  # refused here: nothing made
    profiled = ProfiledRuntime(runtime) if profile else None
    with progress_line(f"bringing up {parsed.name}") as progress:
        # By hand: kept on purpose, so a later run never reclaims it as stale.
        lab = Lab.up(
            given, name=name, progress=progress, keep=True, source=str(path),
            runtime=cast("Runtime", profiled) if profiled else runtime,  # timed: every call passed on
        )  # fmt: skip
    console().print(f"[green]lab {lab.name} is up[/green] in {lab.timings['up']:.1f} s")
    _print_lab(lab)
    if profiled is not None:
        from labkit.cli.profile import print_profile

        print_profile(lab, profiled.profile, time.perf_counter() - PROCESS_STARTED)
    console().print("\nnext:")
    for line in next_steps(lab):
        # never wrapped: each is a command to copy
        console().print(f"  [bold]{escape(line)}[/bold]", highlight=False, soft_wrap=True)


def next_steps(lab: Any) -> list[str]:
    """Commands worth typing next, with this lab's own names and addresses."""
    steps = []
    pods = lab.pods()
    if pods:
        client = next((p for p in pods if not p.spec.run), pods[0])
        server = next((p for p in pods if p.spec.run and p.node.name != client.node.name), None)
        if server is not None:
            steps.append(
                f"labkit exec {client.name} -- curl -s {server.ip}:8080/   # {server.name} on {server.node.name}"
            )
        for name in list(lab.topology.services)[:1]:
            steps.append(
                f"labkit exec {client.name} -- curl -s {name}:{lab.topology.services[name].ports[0].port}/"
            )
    steps += [
        f"labkit check {lab.name}",
        f"labkit shell {lab.node(next(iter(lab.topology.nodes))).name}",
        f"labkit down {lab.name}",
    ]
    return steps


@app.command()
@friendly
def down(
    name: Annotated[str | None, typer.Argument(help="Lab name")] = None,
    all_labs: Annotated[
        bool, typer.Option("--all", help="Remove every labkit object on this engine")
    ] = False,
    stale: Annotated[
        bool, typer.Option("--stale", help="Remove every lab whose owner process is gone")
    ] = False,
) -> None:
    """Remove a lab (idempotent); with --stale every lab left by a dead run; with --all everything."""
    from labkit.core import state
    from labkit.core.owner import stale_reason
    from labkit.runtime.docker import DockerRuntime

    runtime = runtime_of(None)
    if stale:
        names = {lab for lab in runtime.lab_names() if stale_reason(runtime.lab_labels(lab))}
        if isinstance(runtime, DockerRuntime):
            runtime.remove_dead_probes()
    elif all_labs:
        names = runtime.lab_names() | set(state.known_labs())
    elif name:
        names = {name}
    else:
        names = {only_lab(None)}
    for lab in sorted(names):
        with state.lock(lab):  # after an `up` of that name that is creating it now
            if stale and not stale_reason(runtime.lab_labels(lab)):
                continue  # reclaimed and brought up again meanwhile
            # On every host it was brought up on; a host that does not answer keeps the lab known.
            saved = state.extras(lab)
            removed = (runtime_from_state(saved) if saved is not None else runtime).remove_lab(lab)
            state.forget(lab)
        typer.echo(f"removed lab {lab} ({removed} objects)")  # not rich: 30 ms of every down
    if all_labs and isinstance(runtime, DockerRuntime):
        runtime.remove_macvlan_parents()  # of a run killed before it made its network
    if not names:
        typer.echo("nothing to remove")


def _print_lab(lab: Any) -> None:
    from rich.table import Table

    document = describe_with_hosts(lab)
    wiring = f"backend {document['backend']}, pods on {document['cni_plugin']}"
    nodes = Table(title=f"lab {lab.name}: nodes ({wiring})", title_justify="left")
    placed = "host" in document["nodes"][0]
    for column in ("node", *(["host"] if placed else []), "underlay IPs", "pod subnet", "roles"):
        nodes.add_column(column)
    for node in document["nodes"]:
        ips = ", ".join(f"{ip} ({net})" for net, ip in node["ips"].items())
        host = [f"{node['host']}" + (" [red]LOST[/red]" if node["lost"] else "")] if placed else []
        nodes.add_row(
            node["name"], *host, ips, node["pod_subnet"] or "-", ",".join(node["roles"]) or "-"
        )
    console().print(nodes)
    if document["pods"]:
        pods = Table(title="pods", title_justify="left")
        for column in ("pod", "node", "namespace", "IP", "labels"):
            pods.add_column(column)
        for pod in document["pods"]:
            labels = ",".join(f"{k}={v}" for k, v in pod["labels"].items())
            pods.add_row(pod["name"], pod["node"], pod["namespace"], pod["ip"], labels or "-")
        console().print(pods)
    if document.get("services"):
        _print_services(document)
    for key, value in document.items():
        if key in (
            "name",
            "source",
            "backend",
            "cni_plugin",
            "networks",
            "nodes",
            "pods",
            "services",
            "service_proxy",
        ):
            continue
        console().print(f"[bold]{key}[/bold]: {json.dumps(value, indent=1)}")


def _print_services(document: dict[str, Any]) -> None:
    """Services: VIP (and LoadBalancer, external addresses), ports (node ports),
    endpoints, and why one has none."""
    from rich.table import Table

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
        addresses = [str(service["vip"] or "None")]
        if service.get("load_balancer_ip"):
            addresses.append(f"LB {service['load_balancer_ip']}")
        addresses += [f"ext {ip}" for ip in service.get("external_ips", [])]
        table.add_row(
            service["name"],
            "\n".join(addresses),
            ports,
            endpoints or f"[yellow]none: {notes}[/yellow]",
        )
    console().print(table)


@app.command()
@friendly
def status(
    name: Annotated[str | None, typer.Argument(help="Lab name")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable")] = False,
) -> None:
    """Nodes with their underlay IPs, pods with their node and IP."""
    lab = attach_lab(name)
    if as_json:
        print(json.dumps(describe_with_hosts(lab), indent=2))
    else:
        _print_lab(lab)


@app.command()
@friendly
def stop(name: Annotated[str | None, typer.Argument(help="Lab name")] = None) -> None:
    """Stop a lab on purpose: its containers stop, its addresses and state stay."""
    lab = attach_lab(name)
    nodes = lab.stop()
    console().print(
        f"lab {lab.name} stopped ({len(nodes)} node(s)); bring it back: labkit start {lab.name}"
    )


@app.command()
@friendly
def start(name: Annotated[str | None, typer.Argument(help="Lab name")] = None) -> None:
    """Bring a stopped lab back (after `labkit stop` or an engine restart), as recorded."""
    lab = attach_lab(name)
    with console().status(f"starting {lab.name}"):
        nodes = lab.start()
    console().print(f"lab {lab.name} is up ({len(nodes)} node(s) rebuilt)")
    _print_lab(lab)
