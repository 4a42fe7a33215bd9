"""Where a pod that names no node runs: the least loaded pod-running node. Pure.

The rule the scheduler of workload pods follows too (`topology.kube.scheduling`):
fewest pods wins, ties going to the node earlier in the file, so the same file
places the same way on every run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def least_loaded(candidates: list[str], load: dict[str, int]) -> str:
    """The candidate with the fewest pods; the first in order among equals. Counts it."""
    chosen = min(candidates, key=lambda node: (load.get(node, 0), candidates.index(node)))
    load[chosen] = load.get(chosen, 0) + 1
    return chosen


def place_unbound(
    pods: Mapping[str, Any], member_nodes: list[str], node_of: Callable[[Any], str | None]
) -> dict[str, str]:
    """A node for each pod `node_of` finds none for, in the pods' order, counting the
    pods that name one as load first. Empty when no node runs pods."""
    load: dict[str, int] = {}
    for pod in pods.values():
        node = node_of(pod)
        if node is not None:
            load[node] = load.get(node, 0) + 1
    if not member_nodes:
        return {}
    return {
        key: least_loaded(member_nodes, load) for key, pod in pods.items() if node_of(pod) is None
    }
