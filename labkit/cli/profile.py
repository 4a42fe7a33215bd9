"""`labkit up --profile`: where the time of `up` went, as tables."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

from rich.table import Table

from labkit.cli.common import console

if TYPE_CHECKING:
    from labkit.lab import Lab
    from labkit.runtime.profiled import Profile


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column == columns[0] else "right")
    return table


def print_profile(lab: Lab, profile: Profile, process_seconds: float) -> None:
    phases = _table("up, by phase", "phase", "seconds")
    phases.add_row("process (start to up)", f"{process_seconds:.3f}")
    for phase, seconds in lab.timings.items():
        phases.add_row(phase, f"{seconds:.3f}")
    for layer, seconds in lab.steps["layers"].items():
        phases.add_row(f"  layer {layer}", f"{seconds:.3f}")
    console().print(phases)
    pods = list(lab.steps["pods"].values())
    if pods:
        cni = _table(
            "CNI per pod (inside each node's script)", "pods", "median s", "max s", "sum s"
        )
        cni.add_row(
            str(len(pods)), f"{statistics.median(pods):.3f}", f"{max(pods):.3f}", f"{sum(pods):.3f}"
        )
        console().print(cni)
    calls = _table("engine calls and execs (threads overlap: sums exceed wall time)",
                   "what", "count", "sum s", "slowest s")  # fmt: skip
    rows = profile.rows()
    for what, count, seconds, slowest in rows[:12]:
        calls.add_row(what, str(count), f"{seconds:.3f}", f"{slowest:.3f}")
    if len(rows) > 12:
        calls.add_row(f"... {len(rows) - 12} more", "", "", "")
    console().print(calls)
