"""Placing pod drafts on nodes: bound ones, then DaemonSets, then the rest spread."""

from __future__ import annotations

from copy import deepcopy

from labkit.errors import Problem
from labkit.topology.kube.converted import Converted
from labkit.topology.kube.podnames import generated_name
from labkit.topology.kube.scheduling import fitting_nodes, least_loaded
from labkit.topology.model import Topology, object_key


def place(
    drafts: list[Converted], topology: Topology, taken: set[str], problems: list[Problem]
) -> list[Converted]:
    """Every draft with its `node` set (a DaemonSet's draft becomes one pod per node)."""
    load: dict[str, int] = {}
    for native in topology.pods.values():
        load[native.node] = load.get(native.node, 0) + 1
    placed: list[Converted] = []
    for draft in drafts:
        if draft.node_name is not None:
            draft.value["node"] = draft.node_name
            load[draft.node_name] = load.get(draft.node_name, 0) + 1
            placed.append(draft)
    for draft in drafts:
        if draft.node_name is None and draft.every_node:
            owner = draft.value["origin"]["owner"]
            for index, node in enumerate(fitting_nodes(topology, draft.node_selector)):
                name = generated_name(f"{draft.document.name}-", owner, index, taken)
                copy = Converted(**{**draft.__dict__, "value": deepcopy(draft.value)})
                copy.value["node"] = node
                copy.value["origin"]["name"] = name
                copy.key = object_key(draft.document.namespace, name)
                load[node] = load.get(node, 0) + 1
                placed.append(copy)
    for draft in drafts:
        if draft.node_name is not None or draft.every_node:
            continue
        candidates = fitting_nodes(topology, draft.node_selector)
        if not candidates:
            problems.append(
                draft.document.problem(
                    draft.trace(("node",)),
                    f"no pod-running node has the labels {draft.node_selector} "
                    f"(nodes: {', '.join(topology.member_nodes())})",
                )
            )
            continue
        draft.value["node"] = least_loaded(candidates, load)
        placed.append(draft)
    return placed
