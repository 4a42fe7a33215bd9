"""`labkit fault ...`: break a running lab on purpose, list what is broken, revert it.

Faults last until reverted (`labkit fault revert ID` or `--all`); they are
kept in the lab's state, so any later command sees them.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from labkit.cli.common import app, attach_lab, console, friendly

fault_app = typer.Typer(
    rich_markup_mode=None,
    no_args_is_help=True,
    help="Break a running lab on purpose, and revert it.",
)
app.add_typer(fault_app, name="fault")

LabOption = Annotated[str | None, typer.Option("--lab", help="Lab name")]
NetworkOption = Annotated[
    str | None, typer.Option(help="Underlay network (default: the node's first)")
]


def _faults(lab_name: str | None) -> Any:
    return attach_lab(lab_name).faults


def _done(fault: Any) -> None:
    console().print(f"fault {fault} (revert: labkit fault revert {fault.id})")


@fault_app.command("list")
@friendly
def fault_list(lab_name: LabOption = None) -> None:
    """The active faults."""
    active = _faults(lab_name).active
    for fault in active:
        console().print(str(fault))
    if not active:
        console().print("no active fault")


@fault_app.command("revert")
@friendly
def fault_revert(
    fault_id: Annotated[int | None, typer.Argument(help="The fault's number")] = None,
    all_faults: Annotated[bool, typer.Option("--all", help="Every active fault")] = False,
    lab_name: LabOption = None,
) -> None:
    """Revert one fault, or all of them."""
    from labkit.errors import UsageError

    faults = _faults(lab_name)
    if all_faults:
        reverted = faults.revert_all()
    elif fault_id is not None:
        reverted = [faults.get(fault_id)]
        faults.revert(reverted[0])
    else:
        raise UsageError("name a fault (labkit fault list) or use --all")
    for fault in reverted:
        console().print(f"reverted {fault}")


@fault_app.command("stop")
@friendly
def fault_stop(node: str, lab_name: LabOption = None) -> None:
    """Stop a node (its container): its pods and paths go down."""
    _done(_faults(lab_name).stop_node(node))


@fault_app.command("start")
@friendly
def fault_start(node: str, lab_name: LabOption = None) -> None:
    """Start a stopped node: its pods, routes and rules come back."""
    _faults(lab_name).start_node(node)
    console().print(f"node {node} is back")


@fault_app.command("restart")
@friendly
def fault_restart(node: str, lab_name: LabOption = None) -> None:
    """Stop and start a node."""
    seconds = _faults(lab_name).restart_node(node)
    console().print(f"node {node} restarted and rebuilt in {seconds:.1f} s")


@fault_app.command("link-down")
@friendly
def fault_link_down(node: str, network: NetworkOption = None, lab_name: LabOption = None) -> None:
    """Take a node's underlay interface down."""
    _done(_faults(lab_name).link_down(node, network))


@fault_app.command("link-up")
@friendly
def fault_link_up(node: str, network: NetworkOption = None, lab_name: LabOption = None) -> None:
    """Bring a node's underlay interface back up (and its routes)."""
    _faults(lab_name).link_up(node, network)
    console().print(f"underlay link of {node} is up")


@fault_app.command("partition")
@friendly
def fault_partition(
    nodes: Annotated[list[str], typer.Argument(help="The nodes to cut off")],
    others: Annotated[
        list[str] | None, typer.Option("--from", help="Cut off from these (default: all others)")
    ] = None,
    lab_name: LabOption = None,
) -> None:
    """Cut a set of nodes off from the others, both ways."""
    _done(_faults(lab_name).partition(nodes, others or None))


@fault_app.command("heal")
@friendly
def fault_heal(lab_name: LabOption = None) -> None:
    """Revert every partition."""
    for fault in _faults(lab_name).heal():
        console().print(f"reverted {fault}")


@fault_app.command("rate")
@friendly
def fault_rate(
    node: str,
    rate: Annotated[str, typer.Argument(help="e.g. 20mbit, 500kbit, 1gbit")],
    network: NetworkOption = None,
    lab_name: LabOption = None,
) -> None:
    """Limit what a node sends on its underlay interface (tbf)."""
    _done(_faults(lab_name).rate_limit(node, rate, network))


@fault_app.command("netem")
@friendly
def fault_netem(
    node: str,
    delay: Annotated[str | None, typer.Option(help="e.g. 50ms")] = None,
    jitter: Annotated[str | None, typer.Option(help="e.g. 10ms (needs --delay)")] = None,
    loss: Annotated[str | None, typer.Option(help="e.g. 1%")] = None,
    network: NetworkOption = None,
    lab_name: LabOption = None,
) -> None:
    """Delay, jitter and loss on a node's underlay interface (needs netem in the kernel)."""
    _done(_faults(lab_name).netem(node, delay=delay, jitter=jitter, loss=loss, network=network))


@fault_app.command("kill")
@friendly
def fault_kill(
    pod: str,
    container: Annotated[str | None, typer.Option(help="One container (default: all)")] = None,
    lab_name: LabOption = None,
) -> None:
    """Kill a pod's processes (its namespace and IP stay)."""
    _done(_faults(lab_name).kill_pod(pod, container))
