"""The underlay MTU a topology chooses (`networks.X.mtu`) and the pod MTU derived
from it, less each backend's encapsulation, as flannel derives it: pure, no Docker."""

from __future__ import annotations

import pytest
from topology_problems import problems

from labkit.dataplane import backends, nodes, vxlan
from labkit.errors import TopologyError
from labkit.lab import Lab
from labkit.runtime.fake import FakeRuntime
from labkit.topology import parse_topology, plan_addresses

JUMBO = """\
name: t
networks:
  underlay: {subnet: 172.31.0.0/24, mtu: MTU}
nodes:
  node-1: {}
  node-2: {}
cluster:
  backend: BACKEND
"""


def topology(backend: str = "vxlan", mtu: int | str = 9000):
    return parse_topology(JUMBO.replace("BACKEND", backend).replace("MTU", str(mtu)))


@pytest.mark.parametrize(
    ("backend", "pod_mtu"), [("vxlan", 8950), ("udp", 8972), ("host-gw", 9000), ("bgp", 9000)]
)
def test_pod_mtu_is_the_underlay_mtu_less_the_encapsulation(backend, pod_mtu):
    assert backends.pod_mtu(topology(backend)) == pod_mtu


def test_the_default_underlay_mtu_is_ethernet_s():
    plain = parse_topology(JUMBO.replace(", mtu: MTU", "").replace("BACKEND", "vxlan"))
    assert backends.underlay_mtu(plain) == 1500
    assert backends.pod_mtu(plain) == 1450


def test_pods_get_the_smallest_mtu_on_their_way():
    racks = parse_topology("""\
name: racks
networks:
  rack-a: {mtu: 9000}
  rack-b: {mtu: 4000}
  outside: {mtu: 1280}
nodes:
  router: {networks: [rack-a, rack-b], roles: [router]}
  node-a: {networks: [rack-a]}
  node-b: {networks: [rack-b]}
  client: {networks: [outside], roles: [external]}
cluster:
  backend: vxlan
""")
    # `outside` carries no pod traffic: only the racks the nodes and the router are on count.
    assert backends.underlay_mtu(racks) == 4000
    assert backends.pod_mtu(racks) == 3950


def test_the_vxlan_device_and_the_pods_bridge_take_the_derived_mtu():
    jumbo = topology("vxlan")
    addresses = plan_addresses(jumbo)
    script = nodes.node_scripts(jumbo, addresses)["node-1"]
    assert f"ip link add {vxlan.DEVICE} mtu 8950 " in script
    assert '"mtu": 8950' in script  # the CNI bridge's conflist


@pytest.mark.parametrize("mtu", [67, 65536, 0])
def test_an_mtu_outside_what_an_ipv4_link_allows_is_refused_where_it_is_written(mtu):
    found = problems(JUMBO.replace("BACKEND", "vxlan").replace("MTU", str(mtu)))
    assert len(found) == 1
    assert "networks.underlay.mtu" in found[0]


def test_an_mtu_that_leaves_the_pods_too_little_is_refused_with_the_network_named():
    tight = topology("vxlan", 100)
    assert backends.underlay_mtu(tight) == 100
    with pytest.raises(TopologyError) as caught:
        backends.pod_mtu(tight)
    (problem,) = caught.value.problems
    assert problem.path == ("networks", "underlay", "mtu")
    assert "at least 118" in str(problem)
    assert backends.mtu_problems(topology("host-gw", 100)) == []


def test_the_lab_creates_its_networks_with_the_topology_s_mtu(host_has_everything):
    runtime = FakeRuntime()
    Lab.up(topology("host-gw"), runtime=runtime, name="fake")
    assert [n["mtu"] for n in runtime.networks.values()] == [9000]
