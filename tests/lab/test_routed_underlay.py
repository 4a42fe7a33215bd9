"""A routed underlay (topologies/two-racks.yaml): two racks joined by a router.

The shipped file runs bgp with a route reflector per rack; the same layout
runs vxlan and udp too (labs derived from the file). host-gw is refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit import Lab, expect
from labkit.errors import TopologyError
from labkit.runtime import features
from labkit.topology import parse_topology

pytestmark = pytest.mark.topology("two-racks")

TOPOLOGY = Path(__file__).resolve().parents[2] / "topologies" / "two-racks.yaml"


def with_backend(backend: str) -> str:
    text = TOPOLOGY.read_text()
    assert "backend: bgp" in text and "name: two-racks\n" in text
    return text.replace("backend: bgp", f"backend: {backend}").replace(
        "name: two-racks\n", f"name: two-racks-{backend}\n"
    )


@pytest.fixture(autouse=True)
def _host_can_route(lab_pool):
    lab_pool.runtime  # noqa: B018  (skips first when no engine answers)
    if not features.has("l2-underlay"):
        pytest.skip(features.missing_reason("l2-underlay"))


def assert_flat_pod_network(lab: Lab) -> None:
    """Every pod reaches every other across the router, at the full pod MTU."""
    expect.reachable(lab.pods(), lab.pods())
    largest = lab.cluster.pod_mtu - 28
    for source, target in (("client-a1", "web-b1"), ("web-b1", "web-a2")):
        fits = lab.pod(source).ping(lab.pod(target), size=largest, dont_fragment=True, count=2)
        assert fits.loss == 0, f"{source} -> {target}, {largest} bytes with DF: {fits}"
        too_big = lab.pod(source).ping(
            lab.pod(target), size=largest + 1, dont_fragment=True, count=1
        )
        assert not too_big.ok


# -- the shipped file: bgp, a route reflector per rack ----------------------------------


def test_nodes_reach_the_other_rack_through_the_router(lab):
    a1, b2, router = lab.node("node-a1"), lab.node("node-b2"), lab.node("router")
    route = a1.exec(f"ip route get {b2.ip}").stdout
    assert f"via {router.ips['rack-a']} " in route
    reply = a1.exec(f"ping -n -c 1 -W 1 {b2.ip}").stdout
    assert "ttl=63" in reply  # one router on the way


def test_bgp_sessions_cross_the_router(lab):
    lab.routing.wait_bgp_converged()  # hold time 3 s: a starved CPU can flap a session
    # A client peers with both reflectors, one of them in the other rack.
    sessions = lab.routing.bgp_protocols(lab.node("node-b2"))
    assert set(sessions) == {"peer_node_a1", "peer_node_b1"}
    assert all(s.established for s in sessions.values()), sessions
    # Every node has every other node's pod subnet; the router has them all
    # (pod packets cross it unencapsulated).
    for node in lab.nodes():
        others = {s for n, s in lab.addresses.pod_subnets.items() if n != node.name}
        assert lab.routing.bgp_routes(node) == others, node.name


def test_pod_subnets_in_the_other_rack_are_routed_via_the_router(lab):
    route = lab.node("node-b2").exec(f"ip route get {lab.pod('web-a1').ip}").stdout
    assert f"via {lab.node('router').ips['rack-b']} " in route


def test_flat_pod_network_with_bgp(lab):
    assert_flat_pod_network(lab)


def test_a_node_without_pods_learns_announces_and_takes_a_pod_later(lab):
    empty, subnet = lab.node("node-b2"), lab.addresses.pod_subnets["node-b2"]
    assert not empty.pods() and "cni0" not in empty.exec("ip -o link").stdout
    lab.routing.wait_bgp_converged()  # hold time 3 s: a starved CPU can flap a session
    # Announced anyway: the others route its block to it; it reaches their pods.
    assert subnet in lab.routing.bgp_routes(lab.node("node-a1"))
    assert empty.ping(lab.pod("web-a1")).loss == 0
    late = lab.add_pod("late-b2", {"node": "node-b2", "run": ["echo-server"]})
    try:
        assert late.ip in subnet
        expect.reachable([lab.pod("client-a1"), lab.pod("web-b1")], [late], within=5)
        assert lab.pod("client-a1").http(late).pod == "late-b2"
    finally:
        lab.delete_pod("late-b2")


def test_host_gw_is_refused_here():
    with pytest.raises(TopologyError) as caught:
        parse_topology(with_backend("host-gw"), source=str(TOPOLOGY))
    (problem,) = caught.value.problems
    assert problem.where.startswith(f"{TOPOLOGY}:")
    assert "node-a1 (on rack-a) and node-b1 (on rack-b)" in problem.message


# -- the same layout with the encapsulating backends ---------------------------------------


@pytest.fixture(scope="module", params=["vxlan", "udp"])
def encapsulated(request, lab_pool):
    topology = parse_topology(with_backend(request.param), source=str(TOPOLOGY))
    lab = Lab.up(topology, runtime=lab_pool.runtime)
    yield lab
    lab.down()


def test_flat_pod_network_with_encapsulation(encapsulated):
    assert_flat_pod_network(encapsulated)
