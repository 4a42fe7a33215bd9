"""The topology: data model, loader, validation and address allocation (pure, no Docker).

Names load on first use (PEP 562): a submodule that needs no model (the hosts
file's types, the name rules) does not pay for the pydantic models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from labkit.lazy import lazy_exports

_WHERE = {
    "Addresses": "labkit.topology.addressing",
    "plan_addresses": "labkit.topology.addressing",
    "load_topology": "labkit.topology.loader",
    "parse_topology": "labkit.topology.loader",
    "resolve_topology_path": "labkit.topology.loader",
    "Pod": "labkit.topology.model",
    "Topology": "labkit.topology.model",
}

if TYPE_CHECKING:
    from labkit.topology.addressing import Addresses, plan_addresses
    from labkit.topology.loader import load_topology, parse_topology, resolve_topology_path
    from labkit.topology.model import Pod, Topology


__getattr__ = lazy_exports("labkit.topology", _WHERE, globals())

__all__ = [
    "Addresses",
    "Pod",
    "Topology",
    "load_topology",
    "parse_topology",
    "plan_addresses",
    "resolve_topology_path",
]
