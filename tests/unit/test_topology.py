"""Topology validation and address allocation: pure, no Docker."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from topology_problems import problems

from labkit.errors import TopologyError
from labkit.topology import parse_topology, plan_addresses
from labkit.topology.addressing import allocate_pod_ips, pick_underlay_subnets

GOOD = """\
name: t
networks:
  underlay: {}
nodes:
  node-1: {networks: [underlay]}
  node-2: {networks: [underlay]}
cluster:
  pod_cidr: 10.244.0.0/16
pods:
  a: {node: node-1}
  b: {node: node-2}
  c: {node: node-1}
"""


def test_a_good_topology_parses():
    topology = parse_topology(GOOD)
    assert topology.member_nodes() == ["node-1", "node-2"]
    assert topology.cluster.backend == "vxlan"


def test_unknown_node_names_the_line():
    (message,) = problems(GOOD.replace("b: {node: node-2}", "b: {node: node-7}"))
    assert message.startswith("t.yaml:11:")
    assert "pods.b.node" in message and "unknown node 'node-7'" in message


def test_unknown_network():
    (message,) = problems(
        GOOD.replace("node-2: {networks: [underlay]}", "node-2: {networks: [rack]}")
    )
    assert "nodes.node-2.networks.0" in message and "unknown network 'rack'" in message


def test_duplicate_names_are_refused():
    (message,) = problems(GOOD.replace("  c: {node: node-1}", "  a: {node: node-1}"))
    assert "t.yaml:12:3" in message and "duplicate name" in message


def test_overlapping_cidrs():
    (message,) = problems(GOOD.replace("pod_cidr: 10.244.0.0/16", "pod_cidr: 10.96.0.0/16"))
    assert "cluster.service_cidr" in message and "overlaps" in message


def test_pinned_underlay_overlapping_the_pod_cidr():
    text = GOOD.replace("underlay: {}", "underlay: {subnet: 10.244.5.0/24}")
    (message,) = problems(text)
    assert "networks.underlay.subnet" in message and "overlaps" in message


def test_too_small_underlay():
    (message,) = problems(GOOD.replace("underlay: {}", "underlay: {subnet: 192.168.50.0/30}"))
    assert "too small" in message


def test_pod_cidr_that_cannot_give_every_node_a_subnet():
    text = GOOD.replace("pod_cidr: 10.244.0.0/16", "pod_cidr: 10.244.0.0/24\n  node_prefix: 24")
    text = text.replace(
        "  node-2: {networks: [underlay]}", "  node-2: {networks: [underlay]}\n  node-3: {}"
    )
    (message,) = problems(text)
    assert "gives only 1 node subnets" in message and "3 nodes" in message


def test_unknown_backend_and_unknown_field():
    found = problems(
        GOOD.replace("pod_cidr:", "backend: quantum\n  pod_cidr:").replace("a: {node", "a: {nod")
    )
    assert any("cluster.backend" in m and "quantum" in m for m in found)
    assert any("pods.a.nod" in m and "unknown field" in m for m in found)


def test_not_yaml():
    (message,) = problems("name: [unclosed")
    assert "not valid YAML" in message


def test_a_pod_on_a_router_is_refused():
    text = """\
name: t
networks: {a: {}, b: {}}
nodes:
  r: {networks: [a, b], roles: [router]}
  n: {networks: [a]}
pods:
  p: {node: r}
"""
    (message,) = problems(text)
    assert "pods.p.node" in message and "runs no pods" in message


def test_host_ports_conflict_on_one_node():
    text = GOOD.replace(
        "a: {node: node-1}", "a: {node: node-1, ports: [{port: 80, host_port: 8080}]}"
    ).replace("c: {node: node-1}", "c: {node: node-1, ports: [{port: 81, host_port: 8080}]}")
    (message,) = problems(text)
    assert "pods.c.ports.0.host_port" in message and "taken by pod 'a'" in message


def test_addresses_are_unique_and_per_node():
    topology = parse_topology(GOOD)
    addresses = plan_addresses(topology, taken=[IPv4Network("172.20.0.0/24")])
    assert addresses.underlay_subnets["underlay"] == IPv4Network("172.20.1.0/24")
    assert addresses.node_ip("node-1") == IPv4Address("172.20.1.2")
    assert addresses.pod_subnets == {
        "node-1": IPv4Network("10.244.0.0/24"),
        "node-2": IPv4Network("10.244.1.0/24"),
    }
    assert addresses.pod_ips == {
        "a": IPv4Address("10.244.0.2"),
        "b": IPv4Address("10.244.1.2"),
        "c": IPv4Address("10.244.0.3"),
    }


def test_underlay_avoids_the_host_routes_and_the_cluster_ranges():
    topology = parse_topology(GOOD.replace("pod_cidr: 10.244.0.0/16", "pod_cidr: 172.20.0.0/16"))
    chosen = pick_underlay_subnets(topology, taken=[IPv4Network("172.21.0.0/16")])
    assert chosen["underlay"] == IPv4Network("172.22.0.0/24")


def test_pod_ips_are_sticky_and_pinned_ones_win():
    topology = parse_topology(
        GOOD.replace("c: {node: node-1}", "c: {node: node-1, ip: 10.244.0.2}")
    )
    subnets = {"node-1": IPv4Network("10.244.0.0/24"), "node-2": IPv4Network("10.244.1.0/24")}
    ips = allocate_pod_ips(topology, subnets, existing={"a": IPv4Address("10.244.0.9")})
    assert ips["c"] == IPv4Address("10.244.0.2")
    assert ips["a"] == IPv4Address("10.244.0.9")


def test_yaml_anchors_and_merge_keys():
    text = """\
name: t
nodes:
  node-1: {}
  node-2: {}
pods:
  web-1: &web {node: node-1, labels: {app: web}, run: [echo-server]}
  web-2: {<<: *web, node: node-2}
"""
    topology = parse_topology(text)
    assert topology.pods["web-2"].node == "node-2"
    assert topology.pods["web-2"].labels == {"app": "web"}
    assert topology.pods["web-1"].node == "node-1"


def test_a_pinned_underlay_subnet_in_use_on_the_host_is_refused():
    topology = parse_topology(GOOD.replace("underlay: {}", "underlay: {subnet: 192.168.50.0/24}"))
    with pytest.raises(
        TopologyError, match=r"networks\.underlay\.subnet: 192\.168\.50\.0/24 is already used"
    ):
        pick_underlay_subnets(topology, taken=[IPv4Network("192.168.50.0/25")])
