"""`labkit exec`, `shell`, `check`: poking a running lab."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Generator
from typing import TYPE_CHECKING, Annotated

import typer

from labkit.cli.common import (
    app,
    attach_lab,
    console,
    engine,
    friendly,
    lab_of_endpoint,
    recorded_target,
)

if TYPE_CHECKING:
    from labkit.runtime.base import Runtime


@app.command(
    name="exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
@friendly
def exec_(
    target: Annotated[str, typer.Argument(help="A node or a pod")],
    command: Annotated[list[str], typer.Argument(help="The command, after --")],
    lab_name: Annotated[str | None, typer.Option("--lab", help="Lab name")] = None,
) -> None:
    """Run a command on a node or in a pod's network namespace; its output as it comes."""
    text = shlex.join(command)
    runtime: Runtime
    if recorded := recorded_target(target, lab_name):
        from labkit.dataplane.script import in_netns

        container, netns = recorded
        runtime, there = engine(), in_netns(netns, text) if netns else text
    else:
        from labkit.core.handles import PodHandle

        lab, endpoint = lab_of_endpoint(target, lab_name)
        node = endpoint.node if isinstance(endpoint, PodHandle) else endpoint
        runtime, container, there = lab.runtime, node.container, endpoint.on_node(text)
    raise typer.Exit(
        _streamed(runtime.exec_stream(container, there))
    )  # `there`: as the node runs it


def _streamed(frames: Generator[tuple[bytes, bytes], None, int]) -> int:
    """Write an exec's output to ours as it comes; its exit code."""
    while True:
        try:
            out, err = next(frames)
        except StopIteration as ended:
            return int(ended.value)
        for chunk, stream in ((out, sys.stdout), (err, sys.stderr)):
            if chunk:
                stream.buffer.write(chunk)
                stream.flush()


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
def check(
    name: Annotated[str | None, typer.Argument(help="Lab name")] = None,
    sources: Annotated[
        str | None, typer.Option("--from", help="Sources: labels k=v,k!=v or names/globs")
    ] = None,
    targets: Annotated[str | None, typer.Option("--to", help="Targets, as --from")] = None,
    sample: Annotated[int | None, typer.Option(help="Probe only N random pairs")] = None,
    seed: Annotated[int, typer.Option(help="Seed of --sample (same seed: same pairs)")] = 0,
) -> None:
    """The pod-by-pod reachability matrix (ping), batched: one exec per node."""
    from rich.markup import escape
    from rich.progress import Progress

    from labkit import expect

    lab = attach_lab(name)
    pods = lab.pods()
    chosen, wanted = expect.select(pods, sources), expect.select(pods, targets)
    with Progress(console=console(), transient=True) as bar:
        task = bar.add_task("probing", total=None)
        matrix = expect.reachability_matrix(
            chosen, wanted, sample=sample, seed=seed,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )  # fmt: skip
    if len(matrix.targets) <= 20 and sample is None:
        console().print(matrix.render(), highlight=False, markup=False)
    else:
        for line in matrix.failed():
            console().print(escape(line), highlight=False)
    counts = matrix.counts()
    summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))
    ok = counts.get("ok", 0)
    console().print(f"{ok}/{len(matrix.cells)} paths reachable ({summary})", highlight=False)
    if ok != len(matrix.cells):
        raise typer.Exit(1)
