"""Cross-reference checks of a topology: the names other modules import.

The checks themselves live in `labkit.topology.checks`, one module per part
of the topology; `CHECKS` there gives the order problems are reported in.
"""

from labkit.topology.checks import (
    CHECKS,
    check_backend,
    check_cidrs,
    check_floating_ips,
    check_ingress,
    check_networks,
    check_pods,
    check_policies,
    check_references,
    check_services,
    check_vrrp,
)
from labkit.topology.networks import networks_of
from labkit.topology.services_alloc import NODE_PORT_RANGE

__all__ = [
    "CHECKS",
    "NODE_PORT_RANGE",
    "check_backend",
    "check_cidrs",
    "check_floating_ips",
    "check_ingress",
    "check_networks",
    "check_pods",
    "check_policies",
    "check_references",
    "check_services",
    "check_vrrp",
    "networks_of",
]
