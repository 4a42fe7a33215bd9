"""`labkit hosts ...`: the Docker hosts a lab spreads over (hosts file, swarm, sandbox).

labkit hosts sandbox up 3       # 3 dockerds on this machine, in a swarm
labkit hosts check FILE         # per host: engine, swarm, node mode, kernel, image, L2
labkit hosts init FILE          # form a swarm of the file's hosts
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from labkit.cli.bench import bench_app
from labkit.cli.common import app, console, csv, friendly
from labkit.errors import LabkitError, UsageError

if TYPE_CHECKING:  # the library and the SDK load when a verb runs, not for `labkit --help`
    from labkit.runtime.docker import DockerRuntime

hosts_app = typer.Typer(
    rich_markup_mode=None, no_args_is_help=True, help="The Docker hosts a lab spreads over."
)
sandbox_app = typer.Typer(
    rich_markup_mode=None, no_args_is_help=True, help="A sandbox of Docker hosts on this machine."
)
app.add_typer(hosts_app, name="hosts")
hosts_app.add_typer(sandbox_app, name="sandbox")

SandboxName = Annotated[str, typer.Option("--name", help="Sandbox name (1-8 characters)")]


# -- status of a multi-host lab --------------------------------------------------


def describe_with_hosts(lab: Any) -> dict[str, Any]:
    """`lab.describe()`, each node with its host and whether that host is lost."""
    from labkit.core.describe import describe_cluster
    from labkit.runtime.fleet import HostLost

    try:
        document: dict[str, Any] = lab.describe()
    except HostLost as error:  # a layer asked a lost node: the plain document still shows
        document = describe_cluster(lab.cluster) | {"lost": str(error)}
    runtime = lab.runtime
    # Not loaded (3 ms at each up): then no Swarm runtime was made in this process.
    swarm = sys.modules.get("labkit.runtime.swarm")
    if swarm is None or not isinstance(runtime, swarm.SwarmRuntime):
        return document
    answers = {host: runtime.host_answers(host) for host in runtime.hosts}
    for node in document["nodes"]:
        try:
            node["host"] = runtime.host_of(node["container"])
        except LabkitError:
            node["host"] = "?"
        node["lost"] = not answers.get(node["host"], False)
    return document


# -- the sandbox ---------------------------------------------------------------


@sandbox_app.command("up")
@friendly
def sandbox_up(
    count: Annotated[int, typer.Argument(help="How many hosts")] = 2,
    name: SandboxName = "default",
    no_image: Annotated[
        bool, typer.Option("--no-image", help="Do not load the node image")
    ] = False,
) -> None:
    """Start COUNT dockerds, each in a network namespace of its own, formed into a swarm."""
    from labkit.runtime import sandbox as sandboxes

    made = sandboxes.sandbox_up(count, name, image=not no_image, progress=console().print)
    steps = ", ".join(f"{k} {v:.2f}s" for k, v in made.timings.items())
    console().print(f"sandbox {name!r} up ({steps})")
    console().print(
        f"hosts file: [bold]{made.inventory}[/bold]  (labkit up TOPOLOGY --hosts {made.inventory})"
    )


@sandbox_app.command("down")
@friendly
def sandbox_down(name: SandboxName = "default") -> None:
    """Remove the sandbox: daemons, namespaces, mounts, folders (idempotent)."""
    from labkit.runtime import sandbox as sandboxes

    removed = sandboxes.sandbox_down(name)
    console().print(
        f"sandbox {name!r} removed"
        + (f": {', '.join(removed)}" if removed else " (nothing was there)")
    )


@sandbox_app.command("status")
@friendly
def sandbox_status(name: SandboxName = "default") -> None:
    """The sandbox's hosts: running, swarm state and role, memory."""
    from labkit.runtime import sandbox as sandboxes

    rows = sandboxes.sandbox_status(name)
    if not rows:
        console().print(f"no sandbox {name!r}")
    for row in rows:
        state = "up" if row.running else "[red]DOWN[/red]"
        console().print(
            f"{row.name}  {state}  swarm={row.swarm} {row.role}  {row.rss_mb:.1f} MB  {row.url}",
            highlight=False,
        )


# -- a hosts file ------------------------------------------------------------------


@hosts_app.command("init")
@friendly
def init(hosts_file: Annotated[str, typer.Argument(help="The hosts file")]) -> None:
    """Form a swarm of the file's hosts (the first one manager), unless they are one already."""
    from labkit.runtime.docker import DockerRuntime
    from labkit.runtime.swarm import SwarmRuntime
    from labkit.runtime.swarm_setup import connect_host, form_swarm
    from labkit.topology.inventory import load_inventory

    inventory = load_inventory(hosts_file)
    clients = [connect_host(host) for host in inventory.hosts.values()]
    runtime = SwarmRuntime(
        {name: DockerRuntime(c) for name, c in zip(inventory.hosts, clients, strict=True)}
    )
    if not runtime.swarm_problems():
        console().print("the hosts are one swarm already")
        return
    addresses = [host.address for host in inventory.hosts.values()]
    if None in addresses:
        raise UsageError(
            f"{hosts_file}: give each unix:// host an `advertise:` address the others reach"
        )
    states = [(c.info().get("Swarm") or {}).get("LocalNodeState") for c in clients]
    if any(state == "active" for state in states):
        raise UsageError(
            f"{hosts_file}: some hosts are in another swarm; leave it first (docker swarm leave)"
        )
    form_swarm(clients, [str(a) for a in addresses])
    console().print(
        f"swarm formed: {', '.join(inventory.hosts)} (manager: {next(iter(inventory.hosts))})"
    )


def check_hosts(hosts_file: str) -> dict[str, Any]:
    """Per host: engine, swarm, node mode, kernel features, node image; and shared L2."""
    from labkit.runtime.docker import DockerRuntime, engine_available
    from labkit.runtime.features import kernel_features_on
    from labkit.runtime.fleet import on_all
    from labkit.runtime.swarm import SwarmRuntime
    from labkit.topology.inventory import load_inventory

    inventory = load_inventory(hosts_file)
    local = DockerRuntime() if engine_available()[0] else None
    runtime = SwarmRuntime.from_inventory(inventory, image_source=local)
    tag = local.node_image() if local else None

    def one(name: str, host: DockerRuntime) -> dict[str, Any]:
        info = host.client.info()
        swarm = info.get("Swarm") or {}
        image = bool(tag and host.has_image(tag))
        row: dict[str, Any] = {
            "engine": f"Docker {info.get('ServerVersion')}",
            "kernel": info.get("KernelVersion"),
            "swarm": swarm.get("LocalNodeState"),
            "role": "manager" if swarm.get("ControlAvailable") else "worker",
            "node image": f"{tag} {'present' if image else 'missing (shipped on up)'}",
        }
        if image and tag:
            mode = host.node_mode(tag)
            row["node mode"] = "privileged" if mode.privileged else "capabilities"
            features = kernel_features_on(host, tag)
            row["kernel features"] = {k: v["ok"] for k, v in features.items()}
        return row

    rows, failures = on_all(runtime.hosts, one)
    report: dict[str, Any] = {"hosts": rows, "unreachable": failures, "swarm problems": []}
    if not failures:
        report["swarm problems"] = runtime.swarm_problems()
        if tag and all(runtime.hosts[h].has_image(tag) for h in rows):
            shared, why = runtime.shared_l2(tag)
            report["shared L2"] = {"ok": shared, "detail": why}
    return report


@hosts_app.command("check")
@friendly
def check(
    hosts_file: Annotated[str, typer.Argument(help="The hosts file")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What each host of the file can run, and whether they can carry one lab."""
    from rich.table import Table

    report = check_hosts(hosts_file)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    table = Table(title=f"hosts of {hosts_file}", title_justify="left")
    for column in (
        "host",
        "engine",
        "kernel",
        "swarm",
        "node mode",
        "node image",
        "kernel features missing",
    ):
        table.add_column(column)
    for name, row in report["hosts"].items():
        missing = [k for k, ok in row.get("kernel features", {}).items() if not ok]
        table.add_row(
            name, row["engine"], str(row["kernel"]), f"{row['swarm']} ({row['role']})",
            row.get("node mode", "-"), row["node image"], ", ".join(missing) or "none",
        )  # fmt: skip
    console().print(table)
    for name, why in report["unreachable"].items():
        console().print(f"[red]{name}: unreachable[/red] ({why})", highlight=False)
    for problem in report["swarm problems"]:
        console().print(
            f"[yellow]{problem}[/yellow]  (labkit hosts init {hosts_file})", highlight=False
        )
    if "shared L2" in report:
        l2 = report["shared L2"]
        mark = "[green]yes[/green]" if l2["ok"] else "[yellow]no[/yellow]"
        console().print(f"shared L2: {mark}  {l2['detail']}", highlight=False)
    if report["unreachable"] or report["swarm problems"]:
        raise typer.Exit(2)


@bench_app.command("hosts")
@friendly
def bench_hosts(
    hosts: Annotated[str, typer.Option(help="Comma-separated host counts")] = "1,2,3",
    backends: Annotated[
        str, typer.Option(help="Comma-separated backends")
    ] = "vxlan,host-gw,udp,bgp",
    big_nodes: Annotated[int, typer.Option(help="Nodes of the big topology")] = 20,
    seconds: Annotated[float, typer.Option(min=0.5, help="Length of each run")] = 2.0,
    repeats: Annotated[int, typer.Option(min=1, help="Rounds; the median is reported")] = 1,
    out: Annotated[Path, typer.Option(help="JSON results")] = Path("bench-results/hosts.json"),
    png: Annotated[Path, typer.Option(help="Chart")] = Path("bench-results/hosts.png"),
) -> None:
    """One lab over 1, 2, 3 sandbox hosts: up/down, pod paths within and across hosts."""
    from labkit.bench.hosts import run

    counts = [int(count) for count in csv(hosts)]
    run(
        host_counts=counts, backends=csv(backends), big_nodes=big_nodes, seconds=seconds,
        repeats=repeats, out=out, png=png, console=console(),
    )  # fmt: skip
