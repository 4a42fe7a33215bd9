"""Helpers the check modules share."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from labkit.topology.model import Topology


def known(names: Iterable[str]) -> str:
    """Names for a message, sorted: `a, b, c`."""
    return ", ".join(sorted(names))


def member_problem(
    topology: Topology,
    nodes: Sequence[str],
    index: int,
    *,
    unknown: str,
    other_role: str,
    twice: str,
) -> str | None:
    """What is wrong with `nodes[index]` in a list of distinct cluster nodes, if anything.

    The three messages are `str.format` templates; they may use {node} (quoted),
    {members} (the cluster nodes) and, in `other_role`, {roles} (the node's roles).
    """
    node = nodes[index]
    members = topology.member_nodes()
    fields = {"node": repr(node), "members": known(members)}
    if node not in topology.nodes:
        template = unknown
    elif node not in members:
        template = other_role
        fields["roles"] = "/".join(topology.nodes[node].roles)
    elif node in nodes[:index]:
        template = twice
    else:
        return None
    return template.format(**fields)
