"""The UDP conntrack cleanup planner (kube-proxy's cleanup.go rules)."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address

from kubeproxy_cases import DNS, PLAN

from labkit.dataplane.conntrack_cleanup import SILENT, cleanup_commands
from labkit.dataplane.kubeproxy import EndpointPlan

DNS_NP = dataclasses.replace(DNS, node_port=30053, affinity_seconds=None)
NEW_EP = EndpointPlan(IPv4Address("10.244.1.9"), 5353)


def _plan(*services):
    return dataclasses.replace(PLAN, services=services)


def test_zero_to_n_endpoints_flushes_the_vip_and_the_node_port():
    before = _plan(dataclasses.replace(DNS_NP, endpoints=()))
    assert cleanup_commands(before, _plan(DNS_NP)) == [
        "conntrack -D -p udp --orig-dst 10.96.0.2 --orig-port-dst 53" + SILENT,
        "conntrack -D -p udp --orig-port-dst 30053" + SILENT,
    ]


def test_a_removed_endpoint_loses_its_entries_by_reply_source():
    after = _plan(dataclasses.replace(DNS_NP, endpoints=(NEW_EP,)))
    assert cleanup_commands(_plan(DNS_NP), after) == [
        "conntrack -D -p udp --orig-dst 10.96.0.2 --orig-port-dst 53 --reply-src 10.244.0.3"
        + SILENT,
        "conntrack -D -p udp --orig-port-dst 30053 --reply-src 10.244.0.3" + SILENT,
    ]


def test_a_terminating_but_serving_endpoint_still_serves():
    terminating = dataclasses.replace(DNS_NP.endpoints[0], ready=False, terminating=True)
    after = _plan(dataclasses.replace(DNS_NP, endpoints=(terminating,)))
    assert cleanup_commands(_plan(DNS_NP), after) == []


def test_tcp_is_left_alone_and_no_change_deletes_nothing():
    assert cleanup_commands(PLAN, PLAN) == []
