"""What every bench does around its measurements: name and bring up its lab,
write its JSON document, lay out its table."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Container, Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from labkit.lab import Lab
from labkit.runtime.docker import DockerRuntime
from labkit.topology import Topology


def lab_name(bench: str) -> str:
    """`<LABKIT_NAME_PREFIX>bench-<bench>`: the prefix keeps parallel users' labs apart."""
    return os.environ.get("LABKIT_NAME_PREFIX", "") + f"bench-{bench}"


def fresh_lab(topology: Topology, name: str, console: Console) -> Lab:
    """The bench's lab, up; a leftover of an interrupted run removed first."""
    runtime = DockerRuntime()
    runtime.remove_lab(name)
    console.print(f"bringing up {name}")
    return Lab.up(topology, runtime=runtime, name=name)


def document(bench: str, **fields: Any) -> dict[str, Any]:
    """A bench's JSON document: which bench, on which host and kernel, then `fields`."""
    return {"bench": bench, "host": platform.node(), "kernel": platform.release(), **fields}


def write_json(out: Path, results: dict[str, Any], *, newline: bool = True) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + ("\n" if newline else ""))


def figures_table(
    title: str,
    columns: Iterable[str],
    *,
    left: Container[str] = (),
    no_wrap: bool = False,
    **options: Any,
) -> Table:
    """A table of figures: columns right-aligned, but for the `left` ones (names)."""
    found = Table(title=title, **options)
    for column in columns:
        found.add_column(column, justify="left" if column in left else "right", no_wrap=no_wrap)
    return found
