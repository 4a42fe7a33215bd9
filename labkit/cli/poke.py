"""`labkit exec`, `shell`, `check`: poking a running lab."""

from __future__ import annotations

import os
import shlex
import sys
from typing import Annotated

import typer

from labkit.cli.common import app, attach_lab, console, friendly, lab_of_endpoint


@app.command(
    name="exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
@friendly
def exec_(
    target: Annotated[str, typer.Argument(help="A node or a pod")],
    command: Annotated[list[str], typer.Argument(help="The command, after --")],
    lab_name: Annotated[str | None, typer.Option("--lab", help="Lab name")] = None,
) -> None:
    """Run a command on a node or in a pod's network namespace."""

    _, endpoint = lab_of_endpoint(target, lab_name)
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
    _, endpoint = lab_of_endpoint(target, lab_name)
    from labkit.core.handles import PodHandle
    from labkit.topology.model import slug

    in_pod = isinstance(endpoint, PodHandle) and not endpoint.spec.host_network
    inner = ["ip", "netns", "exec", slug(endpoint.name), "bash"] if in_pod else ["bash"]
    # An interactive TTY is the docker CLI's job; the SDK has no terminal client.
    os.execvp("docker", ["docker", "exec", "-it", endpoint.node.container, *inner])


@app.command()
@friendly
def check(name: Annotated[str | None, typer.Argument(help="Lab name")] = None) -> None:
    """The pod-by-pod reachability matrix (ping, with RTTs)."""

    lab = attach_lab(name)
    pods = lab.pods()
    from labkit import expect

    matrix = expect.reachability_matrix(pods, pods)
    console.print(matrix.render(), highlight=False)
    failed = [cell for cell in matrix.cells.values() if not cell.ok]
    console.print(f"{len(matrix.cells) - len(failed)}/{len(matrix.cells)} paths reachable")
    if failed:
        raise typer.Exit(1)
