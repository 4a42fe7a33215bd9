"""The PNG of `labkit bench entry`: latency and rate per entry path, failover per
VRRP advertisement interval."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labkit.bench import charts

INTERVAL_COLORS = ("#4c78a8", "#f58518", "#54a24b")


def chart(results: dict[str, Any], png: Path) -> None:
    plt = charts.pyplot()
    failover = results.get("failover")
    columns = 3 if failover else 2
    figure, axes = plt.subplots(1, columns, figsize=(6 * columns, 5.5))
    paths = results["paths"]
    names = list(paths)
    xs = range(len(names))
    labels = [name.replace(" -> ", " ->\n") for name in names]

    latency = axes[0]
    p50 = [paths[n]["p50_ms"] for n in names]
    p99 = [paths[n]["p99_ms"] for n in names]
    low = latency.bar([x - 0.2 for x in xs], p50, 0.4, label="p50", color="#4c78a8")
    high = latency.bar([x + 0.2 for x in xs], p99, 0.4, label="p99", color="#e45756")
    latency.bar_label(low, [f"{v:.2f}" for v in p50], fontsize=7)
    latency.bar_label(high, [f"{v:.1f}" for v in p99], fontsize=7)
    latency.set_yscale("log")  # p50 and p99 differ by orders of magnitude
    latency.set_title("request latency (ms, log scale)")
    latency.legend(frameon=False)

    rate = axes[1]
    bars = rate.bar(xs, [paths[n]["requests_per_s"] for n in names], 0.6, color="#72b7b2")
    rate.bar_label(bars, [f"{paths[n]['requests_per_s']:.0f}" for n in names], fontsize=8)
    rate.set_title("requests per second")

    for axis in axes[:2]:
        axis.set_xticks(list(xs))
        axis.set_xticklabels(labels, fontsize=8)

    if failover:
        _failover_panel(axes[2], failover)
    for axis in axes:
        charts.bar_panel_style(axis, y_margin=0.15)
    wrk = results["wrk"]
    figure.suptitle(
        f"labkit bench entry: {results['controller']} ingress behind a VRRP VIP, from an external "
        f"client (wrk {wrk['connections']} connections x {wrk['seconds']:g} s, median of "
        f"{wrk.get('rounds', 1)})",
        fontsize=11,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.94))
    charts.save(figure, png)


def _failover_panel(axis: Any, failover: dict[str, dict[str, Any]]) -> None:
    scenarios = list(dict.fromkeys(found["scenario"] for found in failover.values()))
    intervals = list(dict.fromkeys(found["advert_interval_s"] for found in failover.values()))
    width = 0.8 / len(intervals)
    for index, interval in enumerate(intervals):
        found = [
            next(
                f for f in failover.values()
                if f["scenario"] == s and f["advert_interval_s"] == interval
            )
            for s in scenarios
        ]  # fmt: skip
        xs = [i + (index - (len(intervals) - 1) / 2) * width for i in range(len(scenarios))]
        bars = axis.bar(
            xs, [f["outage_s"] for f in found], width,
            color=INTERVAL_COLORS[index % len(INTERVAL_COLORS)], label=f"advert_int {interval:g} s",
        )  # fmt: skip
        axis.bar_label(bars, [f"{f['failed_requests']:g} failed" for f in found], fontsize=7)
    axis.set_xticks(range(len(scenarios)))
    axis.set_xticklabels([s.replace("_", " ") for s in scenarios], fontsize=8)
    axis.set_title("failover: client outage (s, median), failed requests on top")
    axis.legend(frameon=False, fontsize=8)
