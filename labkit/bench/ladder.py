"""Where a pod path's throughput goes: each lab's paths held against the references
measured in the same lab, round by round (issue 14). Pure: samples in, ratios out.

A ratio is the median over rounds of (path / reference) within one round: on a
shared host the load drifts between rounds more than within one, so ratios of
paired runs are steadier than a ratio of medians.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from rich.console import Console

from labkit.bench.report import figures_table

METRICS = {
    "tcp1_gbit_s": "TCP x1",
    "tcp4_gbit_s": "TCP x4",
    # Per CPU-second: the same comparison, steady when other work takes the CPUs.
    "tcp1_gbit_per_cpu_s": "TCP x1 per CPU",
    "tcp4_gbit_per_cpu_s": "TCP x4 per CPU",
}

# (path, reference, what the ratio tells); a lab shows those it measured both of.
COMPARISONS = (
    ("cross-node", "bare-vxlan", "pod to pod across nodes vs kernel VXLAN between bare namespaces"),
    ("cross-node", "baseline", "pod to pod across nodes vs node to node over the underlay"),
    ("bare-vxlan", "veth", "VXLAN itself (bare namespaces, same veth)"),
    ("baseline", "veth", "the underlay (Docker's bridge, or the macvlan) vs a bare veth"),
    ("node-vxlan", "bare-vxlan", "node to node over flannel.1 (no pod hops) vs bare VXLAN"),
    ("cross-node", "node-vxlan", "the pod hops: a veth and the CNI bridge (ptp: none) at each end"),
    ("cross-node", "direct", "the lab's pod wiring (CNI bridge or ptp) vs a hand-made /32 route"),
)
PIECE_PREFIX = "cross-node, "  # a piece's path: the cross-node path with the piece changed

# Cross-node TCP (1 and 4 streams) as a share of the backend's physical limit.
GOALS = {"vxlan": ("bare-vxlan", 0.9), "host-gw": ("baseline", 0.95), "bgp": ("baseline", 0.95)}

Samples = Mapping[str, Sequence[Mapping[str, float]]]


def metrics_of(figures: object) -> dict[str, float]:
    """The ladder's metrics of one run's figures (`paths.Figures`)."""
    return {metric: getattr(figures, metric) for metric in METRICS}


def paired_ratio(samples: Samples, path: str, reference: str, metric: str) -> float | None:
    """Median over rounds of path/reference in the same round; None if either is missing."""
    pairs = zip(samples.get(path, ()), samples.get(reference, ()), strict=False)
    found = [a[metric] / b[metric] for a, b in pairs if b.get(metric)]
    return statistics.median(found) if found else None


def comparisons(samples: Samples) -> list[tuple[str, str, str]]:
    """(path, reference, meaning) for what was measured: the fixed ones, then each piece."""
    pieces = [
        (path, "cross-node", f"{path.removeprefix(PIECE_PREFIX)} (vs the lab as built)")
        for path in samples
        if path.startswith(PIECE_PREFIX)
    ]
    return [(p, r, m) for p, r, m in (*COMPARISONS, *pieces) if p in samples and r in samples]


def ladder(samples: Samples) -> list[dict[str, object]]:
    """Each comparison measured, with its paired ratios per metric."""
    return [
        {
            "path": path,
            "reference": reference,
            "meaning": meaning,
            "ratios": {m: paired_ratio(samples, path, reference, m) for m in METRICS},
        }
        for path, reference, meaning in comparisons(samples)
    ]


def base_backend(name: str) -> str:
    """`vxlan@9000`, `vxlan@macvlan` (a backend on another underlay) -> `vxlan`."""
    return name.split("@", 1)[0]


def goal_notes(backends: Mapping[str, Mapping[str, object]]) -> list[tuple[str, bool, str]]:
    """(goal, met, figure) per backend that ran and has a goal, on both TCP figures."""
    notes = []
    for metric, label in METRICS.items():
        for name, result in backends.items():
            goal = GOALS.get(base_backend(name))
            rungs = result.get("ladder")
            if goal is None or not isinstance(rungs, list):
                continue
            reference, share = goal
            for rung in rungs:
                if (rung["path"], rung["reference"]) == ("cross-node", reference):
                    ratio = rung["ratios"][metric]
                    if ratio is not None:
                        notes.append((f"{name} cross-node {label} >= {share:g}x {reference}",
                                      ratio >= share, f"{ratio:.2f}x"))  # fmt: skip
    return notes


def show(backends: Mapping[str, Mapping[str, object]], console: Console) -> None:
    """One table: each lab's comparisons, as paired ratios."""
    table = figures_table(
        "where it goes: path / reference, median of paired rounds (1.00x: no cost)",
        (
            "lab",
            "path / reference",
            *(m.replace(" per", "\nper") for m in METRICS.values()),
            "what",
        ),
        left=("lab", "path / reference", "what"),
        title_justify="left",
    )
    for name, result in backends.items():
        rungs = result.get("ladder")
        if not isinstance(rungs, list):
            continue
        for index, rung in enumerate(rungs):
            cells = [
                "-" if rung["ratios"][m] is None else f"{rung['ratios'][m]:.2f}x" for m in METRICS
            ]
            table.add_row(
                name if index == 0 else "",
                f"{rung['path']} / {rung['reference']}",
                *cells,
                str(rung["meaning"]),
                end_section=index == len(rungs) - 1,
            )
    Console(width=max(console.width, 140), file=console.file).print(table)
