"""`labkit images`, `doctor`, `schema`, `validate`: the host and the files."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from labkit.cli.common import app, console, friendly

images_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True, help="Build the node image.")
app.add_typer(images_app, name="images")


@images_app.command("build")
@friendly
def images_build(
    force: Annotated[bool, typer.Option(help="Rebuild even if up to date")] = False,
) -> None:
    """Build the node image (and a local Debian base when none can be pulled)."""
    from labkit.runtime.docker import connect
    from labkit.runtime.images import build_image

    tag = build_image(
        connect(), "node", force=force, progress=lambda line: console().print(line, highlight=False)
    )
    console().print(f"node image: {tag}")


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
            console().print(f"[bold]{key}[/bold]")
            for feature, detail in value.items():
                mark = "[green]yes[/green]" if detail.get("ok") else "[red]no[/red]"
                console().print(
                    f"  {feature:<14} {mark}  {detail.get('detail', '')}", highlight=False
                )
        else:
            console().print(f"[bold]{key}[/bold]: {value}", highlight=False)


@app.command()
def schema() -> None:
    """The topology file's JSON schema (for editors)."""
    from labkit.topology.model import Topology

    print(json.dumps(Topology.model_json_schema(), indent=2))


@app.command()
@friendly
def validate(
    topology: Annotated[str, typer.Argument(help="A name under topologies/ or a path")],
) -> None:
    """Check a topology file without creating anything."""
    from labkit.topology.loader import load_topology

    parsed = load_topology(topology)
    console().print(f"{parsed.name}: ok ({len(parsed.nodes)} nodes, {len(parsed.pods)} pods)")
