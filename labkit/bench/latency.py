"""Latency figures of many small exchanges (DNS queries, TCP connects, UDP round trips)."""

from __future__ import annotations

import statistics
from typing import Any

from labkit.core.endpoint import Endpoint
from labkit.dataplane.latency_probe import parse_samples, probe_command


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(samples: list[float | None]) -> dict[str, Any]:
    done = [s for s in samples if s is not None]
    return {
        "count": len(samples),
        "failed": len(samples) - len(done),
        "p50_ms": round(statistics.median(done), 3) if done else None,
        "p99_ms": round(percentile(done, 0.99), 3) if done else None,
    }


def measure(
    source: Endpoint, kind: str, host: str, port: int, count: int, *, name: str = ""
) -> dict[str, Any]:
    """`count` exchanges from `source`, one process: p50/p99 and failures."""
    result = source.exec(probe_command(kind, host, port, count, name=name), timeout=60 + count)
    return summary(parse_samples(result.stdout))
