"""Which runtime a lab gets, and what a multi-host lab is refused for (no engine needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.errors import TopologyError
from labkit.runtime.docker import DockerRuntime
from labkit.runtime.select import (
    hosts_file,
    l2_needs,
    l2_problems,
    placement_for,
    runtime_for,
)
from labkit.topology.inventory import parse_inventory
from labkit.topology.loader import load_topology, parse_topology

TWO_HOSTS = """
hosts:
  h1: {url: "unix:///run/a.sock"}
  h2: {url: "unix:///run/b.sock"}
"""


def test_no_hosts_file_is_this_machines_engine(monkeypatch):
    monkeypatch.delenv("LABKIT_HOSTS", raising=False)
    assert hosts_file(None) is None
    local = DockerRuntime()
    assert runtime_for(None, local=local) is local
    monkeypatch.setenv("LABKIT_HOSTS", "h.yaml")
    assert hosts_file(None) == "h.yaml"
    assert hosts_file("mine.yaml") == "mine.yaml"


def test_vrrp_across_hosts_without_l2_names_the_network_feature_and_reason():
    topology = load_topology("ingress")
    inventory = parse_inventory(TWO_HOSTS)
    placement = placement_for(topology, inventory, "hosts.yaml", None)
    assert l2_needs(topology) == {"underlay": "VRRP (vip 10.213.5.100)"}
    (problem,) = l2_problems(topology, placement, inventory)
    assert (
        "network 'underlay' carries VRRP (vip 10.213.5.100) across hosts h1, h2" in problem.message
    )
    assert "a VIP and multicast do not reach the other hosts" in problem.message
    assert "l2: {parent: IFACE}" in problem.message


def test_vrrp_is_fine_with_shared_l2_or_on_one_host():
    topology = load_topology("ingress")
    shared = parse_inventory(TWO_HOSTS + "l2: {parent: eth0}\n")
    assert l2_problems(topology, placement_for(topology, shared, "h", None), shared) == []
    one = parse_inventory('hosts:\n  h1: {url: "unix:///run/a.sock"}\n')
    assert l2_problems(topology, placement_for(topology, one, "h", None), one) == []


def test_floating_ips_need_no_l2():
    topology = parse_topology(
        "name: f\nnodes:\n  n1: {}\n  n2: {}\npods:\n  p: {node: n1}\n"
        "floating_ips:\n  fip: {ip: 192.0.2.10, pod: p}\n"
    )
    assert l2_needs(topology) == {}


def test_a_pin_to_an_unknown_host_is_located_in_the_topology_file(tmp_path: Path):
    path = tmp_path / "pinned.yaml"
    path.write_text("name: pinned\nnodes:\n  node-1: {}\n  node-2: {host: h9}\n")
    with pytest.raises(TopologyError, match=r"pinned.yaml:4:.*unknown host 'h9' \(hosts: h1, h2\)"):
        placement_for(load_topology(path), parse_inventory(TWO_HOSTS), "hosts.yaml", str(path))


def test_unpinned_nodes_fill_the_hosts_in_file_order():
    topology = load_topology("default")
    placement = placement_for(topology, parse_inventory(TWO_HOSTS), "h", None)
    assert placement == {"node-1": "h1", "node-2": "h2", "node-3": "h1"}
