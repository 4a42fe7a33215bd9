"""The layers above the pod network, in the order they are applied.

A new layer is a new module with a class following `layers.base.Layer`, plus
one line here.
"""

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from labkit.core.cluster import Cluster
from labkit.dataplane import script
from labkit.layers.base import Layer
from labkit.layers.cluster_dns import ClusterDnsLayer
from labkit.layers.convergence import Convergence
from labkit.layers.egress import EgressLayer
from labkit.layers.floating import FloatingLayer
from labkit.layers.health_check import HealthCheckLayer
from labkit.layers.impairments import ImpairmentsLayer
from labkit.layers.ingress import IngressLayer
from labkit.layers.load_balancer import LoadBalancerLayer
from labkit.layers.policy import PolicyLayer
from labkit.layers.services import ServicesLayer
from labkit.layers.vrrp import VrrpLayer

LAYERS: tuple[Layer, ...] = (
    Convergence(),  # first: later layers need a pod network that carries traffic
    FloatingLayer(),  # floating IPs: DNAT and routes
    EgressLayer(),  # pod traffic leaving the cluster: masqueraded (ip-masq-agent)
    ServicesLayer(),  # service VIPs, node ports (the DNS ClusterIP too)
    ClusterDnsLayer(),  # after services: records from their endpoints
    HealthCheckLayer(),  # after services: it answers from their per-node plans
    LoadBalancerLayer(),  # after services: the rules must be there before the addresses
    IngressLayer(),  # after services: it reads their endpoints
    VrrpLayer(),  # after ingress: its health check curls the local proxy
    PolicyLayer(),  # late: its FORWARD hook must stay first
    ImpairmentsLayer(),  # last: the others converge and check on clean links
)


def active_layers(cluster: Cluster) -> list[Layer]:
    return [layer for layer in LAYERS if layer.wanted(cluster)]


def check_layers(cluster: Cluster) -> None:
    for layer in active_layers(cluster):
        layer.check(cluster)


def build_parts(cluster: Cluster) -> dict[str, str]:
    """Each node's share of the wanted layers' build parts, in layer order, each
    marked (`script.part`) so its output finds its way back to its layer."""
    return _joined_by_node(
        (node, script.part(layer.name, body))
        for layer in active_layers(cluster)
        for node, body in layer.build_parts(cluster).items()
    )


def build_files(cluster: Cluster) -> dict[str, str]:
    """Each node's share of the wanted layers' files, first in its script at up."""
    return _joined_by_node(
        (node, body.rstrip() + "\n")
        for layer in active_layers(cluster)
        for node, body in layer.build_files(cluster).items()
    )


def _joined_by_node(pieces: Iterable[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for node, text in pieces:
        found[node] = found.get(node, "") + text
    return found


def apply_layers(
    cluster: Cluster, progress: Callable[[str], None] = lambda _: None
) -> dict[str, float]:
    """Apply every wanted layer in order; the seconds each took."""
    seconds = {}
    for layer in active_layers(cluster):
        progress(f"applying {layer.name}")
        started = time.perf_counter()
        layer.apply(cluster)
        seconds[layer.name] = time.perf_counter() - started
    return seconds


def sync_layers(cluster: Cluster, changed_pods: Sequence[str]) -> None:
    for layer in active_layers(cluster):
        layer.sync(cluster, changed_pods)


def follow_services(cluster: Cluster) -> None:
    """Every wanted layer, in order, follows a change of services (`services_changed`)."""
    for layer in active_layers(cluster):
        layer.services_changed(cluster)


def describe_layers(cluster: Cluster) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for layer in active_layers(cluster):
        document.update(layer.describe(cluster))
    return document


__all__ = [
    "LAYERS",
    "Layer",
    "active_layers",
    "apply_layers",
    "build_files",
    "build_parts",
    "check_layers",
    "describe_layers",
    "follow_services",
    "sync_layers",
]
