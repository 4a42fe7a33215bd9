"""The topology: data model, loader, validation and address allocation (pure, no Docker)."""

from labkit.topology.addressing import Addresses, plan_addresses
from labkit.topology.loader import load_topology, parse_topology, resolve_topology_path
from labkit.topology.model import Pod, Topology

__all__ = [
    "Addresses",
    "Pod",
    "Topology",
    "load_topology",
    "parse_topology",
    "plan_addresses",
    "resolve_topology_path",
]
