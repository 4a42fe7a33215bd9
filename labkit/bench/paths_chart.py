"""The PNG of `labkit bench paths`: one panel per figure, backends side by side,
the baseline as a line across each panel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labkit.bench import charts

COLORS = {"same-node": "#4c78a8", "cross-node": "#f58518"}
LABELS = {"same-node": "pod to pod, same node", "cross-node": "pod to pod, across nodes"}
PANELS = (
    ("tcp1_gbit_s", "TCP, 1 stream (Gbit/s)"),
    ("tcp4_gbit_s", "TCP, 4 streams (Gbit/s)"),
    ("udp_gbit_s", "UDP at the path MTU, received (Gbit/s)"),
    ("rtt_p50_us", "Round trip, µs (log; lower is better): bar p50, whisker p99"),
)
GOAL_METRICS = ("tcp1_gbit_s", "tcp4_gbit_s")


def draw(results: dict[str, Any], png: Path) -> None:
    from labkit.bench.ladder import GOALS, base_backend

    plt = charts.pyplot()
    ran = {b: r for b, r in results["backends"].items() if "paths" in r}
    names = list(ran)
    baseline = results["baseline"]["figures"]
    width = 0.36
    figure, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    for axis, (metric, title) in zip(axes.flat, PANELS, strict=True):
        latency = metric == "rtt_p50_us"
        axis.axhline(
            baseline[metric], color="#555555", linewidth=1.5, label="node to node (baseline)"
        )
        for offset, path in enumerate(COLORS):
            xs = [i + (offset - 0.5) * width for i in range(len(names))]
            values = [ran[b]["paths"][path][metric] for b in names]
            axis.bar(xs, values, width, color=COLORS[path], label=LABELS[path])
            tops = list(values)
            if latency:
                tops = [ran[b]["paths"][path]["rtt_p99_us"] for b in names]
                axis.vlines(xs, values, tops, color="black", linewidth=1)
                axis.scatter(xs, tops, marker="_", color="black", s=80, zorder=3)
            elif metric in GOAL_METRICS and path == "cross-node":
                for x, backend, top in zip(xs, names, values, strict=True):
                    reference, share = GOALS.get(base_backend(backend), ("", 0.0))
                    level = ran[backend].get("tcp_medians", {}).get(reference)
                    if level:
                        goal = share * level[metric]
                        axis.hlines(goal, x - width / 2, x + width / 2, colors="black",
                                    linestyles="dashed", linewidth=1.2)  # fmt: skip
                        tops[names.index(backend)] = max(top, goal)
            for x, backend, top in zip(xs, names, tops, strict=True):
                ratio = ran[backend]["ratios"][path][metric]
                axis.annotate(f"{ratio:.2f}x", (x, top), xytext=(0, 3), textcoords="offset points",
                              ha="center", va="bottom", fontsize=8)  # fmt: skip
        if latency:
            axis.axhline(baseline["rtt_p99_us"], color="#555555", linewidth=1, linestyle=":")
            axis.set_yscale("log")
        axis.set_title(title, fontsize=11)
        axis.set_xticks(range(len(names)))
        axis.set_xticklabels([f"{b}\npod MTU {ran[b]['pod_mtu']}" for b in names])
        charts.bar_panel_style(axis, y_margin=0.12)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=3, frameon=False, fontsize=10,
                  bbox_to_anchor=(0.5, 0.935))  # fmt: skip
    settings, host = results["settings"], results["host"]
    figure.suptitle(
        f"labkit bench paths: median of {settings['repeats']} runs of {settings['seconds']:g} s "
        f"(kernel {host['kernel']}, {host['cpus']} CPUs)\n"
        "labels: ratio to the baseline (its p50 for latency); dashed: the backend's goal; "
        "dotted: baseline p99",
        fontsize=11,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.925))
    charts.save(figure, png)
