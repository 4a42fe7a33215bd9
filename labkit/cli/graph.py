"""`labkit graph TOPOLOGY|LAB`: the topology (or a live lab, with its faults) as a graph.

labkit graph default --format mermaid          # a file: planned addresses
labkit graph dy-faults --format svg -o lab.svg  # a lab: stopped nodes, downed links, partitions
"""

from __future__ import annotations

import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from labkit.cli.common import app, attach_lab, console, friendly
from labkit.errors import UsageError

if TYPE_CHECKING:  # the library loads when the verb runs, not for `labkit --help`
    from labkit.lab import Lab
    from labkit.topology.graph import Graph

FORMAT_HELP = (
    "mermaid | dot | svg | png"  # labkit.topology.graph.FORMATS (a unit test holds them equal)
)


def _graph(source: str) -> Graph:
    """A running lab's graph when `source` names one, else the topology file's."""
    from labkit.core import state
    from labkit.runtime.docker import DockerRuntime
    from labkit.topology.addressing import plan_addresses
    from labkit.topology.graph import graph_of, live_from_faults
    from labkit.topology.loader import load_topology, resolve_topology_path

    if source in state.known_labs() and source in DockerRuntime().lab_names():
        lab: Lab = attach_lab(source)
        live = live_from_faults([asdict(fault) for fault in lab.faults.active], lab.topology)
        live = replace(
            live, stopped_nodes=live.stopped_nodes | lab.cluster.stopped_nodes() | _stopped(lab)
        )
        return graph_of(lab.topology, lab.addresses, live)
    topology = load_topology(resolve_topology_path(source))
    return graph_of(topology, plan_addresses(topology, []))


def _stopped(lab: Lab) -> frozenset[str]:
    """Nodes whose containers do not run (a stopped lab, an engine restart)."""
    from labkit.core.machines import running_nodes

    return frozenset(set(lab.topology.nodes) - set(running_nodes(lab.cluster)))


@app.command()
@friendly
def graph(
    source: Annotated[str, typer.Argument(help="A topology (name or path) or a running lab")],
    fmt: Annotated[str, typer.Option("--format", "-f", help=FORMAT_HELP)] = "mermaid",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default: stdout)")
    ] = None,
) -> None:
    """Networks, nodes and their roles, pods, services and their endpoints; a lab's faults."""
    from labkit.topology.graph import FORMATS, render

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    drawn = render(_graph(source), fmt)
    data = drawn.encode() if isinstance(drawn, str) else drawn
    if output is not None:
        output.write_bytes(data)
        console().print(f"wrote {output} ({fmt})")
    elif isinstance(drawn, bytes) and sys.stdout.isatty():
        raise UsageError(f"--format {fmt} is binary: use -o FILE or a pipe")
    else:
        sys.stdout.buffer.write(data)
