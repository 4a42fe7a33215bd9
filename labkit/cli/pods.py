"""`labkit pod ...`: change the pods of a running lab."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from labkit.cli.common import app, attach_lab, console, friendly

pod_app = typer.Typer(
    rich_markup_mode=None, no_args_is_help=True, help="Change the pods of a running lab."
)
app.add_typer(pod_app, name="pod")


@pod_app.command("add")
@friendly
def pod_add(
    name: str,
    node: Annotated[
        str | None, typer.Option(help="The node to run it on; default: the least loaded")
    ] = None,
    label: Annotated[list[str] | None, typer.Option(help="key=value, repeatable")] = None,
    run: Annotated[list[str] | None, typer.Option(help="A container's command, repeatable")] = None,
    namespace: str = "default",
    lab_name: Annotated[str | None, typer.Option("--lab")] = None,
) -> None:
    """Add a pod to a running lab; services follow."""
    lab = attach_lab(lab_name)
    labels = dict(item.split("=", 1) for item in label or [])
    pod = lab.add_pod(
        name, {"node": node, "labels": labels, "run": run or [], "namespace": namespace}
    )
    console().print(f"pod {pod.name} on {pod.node.name}: {pod.ip}")
    _print_service_sync(lab)


@pod_app.command("delete")
@friendly
def pod_delete(name: str, lab_name: Annotated[str | None, typer.Option("--lab")] = None) -> None:
    """Delete a pod; services follow."""
    lab = attach_lab(lab_name)
    lab.delete_pod(name)
    console().print(f"pod {name} deleted")
    _print_service_sync(lab)


@pod_app.command("move")
@friendly
def pod_move(
    name: str,
    node: Annotated[str, typer.Argument(help="The node to move it to")],
    lab_name: Annotated[str | None, typer.Option("--lab")] = None,
) -> None:
    """Recreate a pod on another node with a new IP; services, DNS, floating IPs follow."""
    lab = attach_lab(lab_name)
    old_ip = lab.pod(name).ip
    pod = lab.move_pod(name, node)
    console().print(f"pod {name} moved to {node}: {old_ip} -> {pod.ip}")


@pod_app.command("kill")
@friendly
def pod_kill(name: str, lab_name: Annotated[str | None, typer.Option("--lab")] = None) -> None:
    """Kill a pod's processes (its namespace and IP stay)."""
    lab = attach_lab(lab_name)
    lab.pod(name).kill()
    console().print(f"pod {name}: processes killed")
    _print_service_sync(lab)


@pod_app.command("restart")
@friendly
def pod_restart(name: str, lab_name: Annotated[str | None, typer.Option("--lab")] = None) -> None:
    """Restart a pod's processes."""
    lab = attach_lab(lab_name)
    lab.pod(name).restart()
    console().print(f"pod {name}: restarted")
    _print_service_sync(lab)


@pod_app.command("label")
@friendly
def pod_label(
    name: str,
    labels: Annotated[list[str], typer.Argument(help="key=value ... (replaces the labels)")],
    lab_name: Annotated[str | None, typer.Option("--lab")] = None,
) -> None:
    """Replace a pod's labels; services follow."""
    lab = attach_lab(lab_name)
    lab.set_labels(name, dict(item.split("=", 1) for item in labels))
    console().print(f"pod {name}: labels set")
    _print_service_sync(lab)


def _print_service_sync(lab: Any) -> None:
    """The service proxy's programming latency for the change just made (when it has services)."""
    summary = lab.services.last_sync() if lab.topology.services else None
    if summary:
        console().print(
            f"services: rules programmed on {len(summary['per_node'])} node(s) in "
            f"{summary['seconds'] * 1000:.0f} ms ({summary['kind']} sync)"
        )
