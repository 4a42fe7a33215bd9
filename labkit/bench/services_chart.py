"""The PNG of `labkit bench services`: one panel per figure, a line per proxy mode,
the number of services on a log axis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labkit.bench import charts

COLORS = {"iptables": "#e45756", "iptables-legacy": "#f58518", "nftables": "#4c78a8"}
MARKERS = {"iptables": "o", "iptables-legacy": "s", "nftables": "^"}
PANELS = (
    ("full_sync_s", "Full sync on 3 nodes (s)", True),
    ("change_s", "One-endpoint change on 3 nodes (s)", True),
    ("rules", "Rules in the kernel", True),
    (
        "first_packet_p50_us",
        "First packet: connect() to the last service (µs), p50 — p99 dashed",
        True,
    ),
)
# A panel's second, fainter line per mode: (figure, line style).
COMPANIONS = {
    "first_packet_p50_us": ("first_packet_p99_us", "--"),
    "change_s": ("change_checked_s", ":"),
}


def draw(rows: list[dict[str, Any]], png: Path, goals: dict[str, float]) -> None:
    plt = charts.pyplot()
    modes = [m for m in COLORS if any(r["mode"] == m for r in rows)]
    figure, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    for axis, (metric, title, log) in zip(axes.flat, PANELS, strict=True):
        for mode in modes:
            points = sorted((r["services"], r) for r in rows if r["mode"] == mode)
            xs = [n for n, _ in points]
            axis.plot(
                xs,
                [r[metric] for _, r in points],
                marker=MARKERS[mode],
                color=COLORS[mode],
                label=mode,
            )
            if metric in COMPANIONS:
                companion, style = COMPANIONS[metric]
                values = [r[companion] for _, r in points]
                axis.plot(xs, values, linestyle=style, color=COLORS[mode], alpha=0.6)
        if metric == "full_sync_s":
            axis.scatter([1000], [goals["full_sync_1000_s"]], marker="_", s=400, color="black",
                         label="goal at 1,000")  # fmt: skip
        if metric == "change_s":
            axis.axhline(
                goals["change_s"], color="black", linestyle="dashed", linewidth=1, label="goal"
            )
            title += " — dotted: with drift check"
        axis.set_xscale("log")
        if log:
            axis.set_yscale("log")
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("services (10 endpoints each)")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle("labkit bench services: kube-proxy's iptables vs nftables modes")
    figure.tight_layout()
    charts.save(figure, png)
