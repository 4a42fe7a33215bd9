"""Checks that relate one part of a topology to another, one module per part.

Each check yields `Problem`s with the path of the offending value, so the
loader can point at its line. Nothing here touches Docker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from labkit.errors import Problem
from labkit.topology.checks.backends import check_backend
from labkit.topology.checks.impairments import check_impairments
from labkit.topology.checks.ingress import check_ingress, check_vrrp
from labkit.topology.checks.ingress_l4 import check_ingress_l4
from labkit.topology.checks.names import check_object_keys
from labkit.topology.checks.pods import check_pods
from labkit.topology.checks.policy import check_floating_ips, check_policies
from labkit.topology.checks.service_types import check_load_balancer_pool, check_service_types
from labkit.topology.checks.services import check_services
from labkit.topology.checks.underlay import check_cidrs, check_networks
from labkit.topology.model import Topology

Check = Callable[[Topology], Iterable[Problem]]

# The order problems are reported in.
CHECKS: list[Check] = [
    check_object_keys,
    check_networks,
    check_cidrs,
    check_impairments,
    check_pods,
    check_backend,
    check_ingress,
    check_ingress_l4,
    check_vrrp,
    check_policies,
    check_floating_ips,
    check_services,
    check_load_balancer_pool,
    check_service_types,
]


def check_references(topology: Topology) -> list[Problem]:
    problems: list[Problem] = []
    for check in CHECKS:
        problems.extend(check(topology))
    return problems
