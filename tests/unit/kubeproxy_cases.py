"""The service ports both proxy modes' unit tests render (test_kubeproxy_iptables/_nft)."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv4Network

from labkit.dataplane.kubeproxy import EndpointPlan, ProxyPlan, ServicePortPlan

WEB = ServicePortPlan(
    "default", "web", "http", "TCP", IPv4Address("10.96.0.1"), 80, node_port=30080,
    endpoints=(
        EndpointPlan(IPv4Address("10.244.0.2"), 8080, "web-1"),
        EndpointPlan(IPv4Address("10.244.1.2"), 8080, "web-2"),
    ),
)  # fmt: skip
DNS = ServicePortPlan(
    "default", "dns", "", "UDP", IPv4Address("10.96.0.2"), 53, affinity_seconds=60,
    endpoints=(EndpointPlan(IPv4Address("10.244.0.3"), 5353, "dns-1"),),
)  # fmt: skip
EMPTY = ServicePortPlan("default", "empty", "", "TCP", IPv4Address("10.96.0.3"), 80)
PLAN = ProxyPlan(IPv4Network("10.244.0.0/16"), (WEB, DNS, EMPTY))
# web loses its endpoint on 10.244.1.2
CHANGED = dataclasses.replace(
    PLAN, services=(dataclasses.replace(WEB, endpoints=WEB.endpoints[:1]), DNS, EMPTY)
)
# kube-proxy's own test service: its chain names must come out the same.
KUBE_SVC1 = ServicePortPlan("ns1", "svc1", "p80", "TCP", IPv4Address("172.30.0.41"), 80)
KUBE_EP1 = EndpointPlan(IPv4Address("10.180.0.1"), 80)
