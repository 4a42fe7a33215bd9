"""Running per-node scripts that changed since they last ran (policy, floating IPs)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from labkit.concurrency import parallel

if TYPE_CHECKING:
    from labkit.core.cluster import Cluster


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def push_changed(
    cluster: Cluster, scripts: Mapping[str, str], applied: dict[str, str], *, force: bool
) -> dict[str, float]:
    """Run, on every running node, its script if it differs from the one in `applied`
    (every script with `force`); record what ran. Returns the seconds each node took.

    A stopped node is left out: it gets everything when it returns.
    """

    down = cluster.stopped_nodes()
    todo = {
        node: text
        for node, text in scripts.items()
        if node not in down and (force or applied.get(node) != digest(text))
    }

    def run(node: str) -> float:
        started = time.perf_counter()
        cluster.node(node).exec(todo[node])
        return time.perf_counter() - started

    seconds = dict(zip(todo, parallel(run, todo), strict=True))
    applied.update({node: digest(text) for node, text in todo.items()})
    return seconds
