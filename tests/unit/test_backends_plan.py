"""The backends' plans (host-gw, udp, bgp), their kernel needs, and the
validation that refuses layouts a backend cannot serve: pure, no Docker."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from topology_problems import problems
from typer.testing import CliRunner

from labkit.cli import app
from labkit.dataplane import backends, bgp, udp
from labkit.dataplane.script import commands
from labkit.errors import FeatureMissing
from labkit.layers.convergence import check_pod_network
from labkit.runtime import features
from labkit.topology import parse_topology, plan_addresses
from labkit.topology.loader import load_topology
from labkit.topology.model import Topology

ROOT = Path(__file__).resolve().parents[2]

TWO_NODES = """\
name: t
networks:
  underlay: {subnet: 172.31.0.0/24}
nodes:
  node-1: {}
  node-2: {}
  node-3: {}
cluster:
  backend: BACKEND
"""

TWO_RACKS = """\
name: racks
networks:
  rack-a: {subnet: 172.31.1.0/24}
  rack-b: {subnet: 172.31.2.0/24}
nodes:
  router: {networks: [rack-a, rack-b], roles: [router]}
  node-a1: {networks: [rack-a]}
  node-a2: {networks: [rack-a]}
  node-b1: {networks: [rack-b]}
cluster:
  backend: BACKEND
  bgp: {route_reflectors: [node-a1]}
"""


def plan(text: str, backend: str) -> tuple[Topology, dict[str, str]]:
    topology = parse_topology(text.replace("BACKEND", backend), source="t.yaml")
    addresses = plan_addresses(topology)
    return topology, backends.backend_scripts(topology, addresses)


# -- pod MTU per backend ----------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "mtu"), [("vxlan", 1450), ("udp", 1472), ("host-gw", 1500), ("bgp", 1500)]
)
def test_pod_mtu_leaves_room_for_the_encapsulation(backend, mtu):
    topology = parse_topology(TWO_NODES.replace("BACKEND", backend))
    assert backends.pod_mtu(topology) == mtu


# -- host-gw -------------------------------------------------------------------------


def test_host_gw_routes_each_peer_subnet_via_its_underlay_address():
    _, scripts = plan(TWO_NODES, "host-gw")
    assert scripts["node-1"] == (  # one `ip` process for every peer
        "set -e\n"
        "ip -batch - <<'LABKIT_BATCH'\n"
        "route replace 10.244.1.0/24 via 172.31.0.3\n"
        "route replace 10.244.2.0/24 via 172.31.0.4\n"
        "LABKIT_BATCH\n"
    )
    assert "10.244.1.0/24" not in scripts["node-2"]


# -- udp -----------------------------------------------------------------------------------


def test_udp_gives_each_peer_a_tun_device_and_a_socat():
    _, scripts = plan(TWO_NODES, "udp")
    node1 = scripts["node-1"]
    # One device per peer, named by the peer's place in the cluster.
    assert "ip tuntap add dev lkudp-1 mode tun" in node1
    assert "ip tuntap add dev lkudp-2 mode tun" in node1
    assert "lkudp-0" not in node1
    assert "ip link set lkudp-1 mtu 1472" in node1
    assert "ip route replace 10.244.1.0/24 dev lkudp-1" in node1
    assert "ip route replace 10.244.2.0/24 dev lkudp-2" in node1
    assert "ip addr add 10.244.0.0/32 dev lkudp-1" in node1
    socat = next(line for line in node1.splitlines() if "socat" in line and "setsid" in line)
    assert "TUN,tun-type=tun,tun-name=lkudp-1,iff-no-pi,iff-up" in socat
    assert "UDP:172.31.0.3:8285,bind=172.31.0.2,sourceport=8285,reuseaddr," in socat
    # Socket buffers beyond the default, forced (SOL_SOCKET 1, SO_RCVBUFFORCE 33, SO_SNDBUFFORCE 32).
    assert "setsockopt-int=1:33:4194304,setsockopt-int=1:32:4194304" in socat
    # Detached, so the exec that starts it returns.
    assert socat.endswith("> /var/log/labkit/lkudp-1.log 2>&1 < /dev/null")


def test_udp_tunnel_command_keeps_the_pid():
    peer = udp.UdpPeer(
        "lkudp-3",
        IPv4Network("10.244.3.0/24"),
        IPv4Address("172.31.0.5"),
        IPv4Address("172.31.0.2"),
    )
    command = udp.tunnel_command(peer)
    assert command.startswith("setsid -f sh -c ")
    assert "echo $$ > /var/lib/labkit/udp/lkudp-3.pid; exec socat -d" in command
    assert udp.attached_script(["lkudp-3"]) == (
        '[ "$(cat /sys/class/net/lkudp-3/carrier 2>/dev/null)" = 1 ] '
        "&& echo 'lkudp-3 up' || echo 'lkudp-3 down'"
    )


MULTI_HOMED = """\
name: t
networks:
  a: {subnet: 172.31.1.0/24}
  b: {subnet: 172.31.2.0/24}
nodes:
  node-1: {networks: [a, b]}
  node-2: {networks: [b]}
cluster:
  backend: BACKEND
"""


def test_a_multi_homed_node_talks_on_the_network_it_shares_with_the_peer():
    _, host_gw = plan(MULTI_HOMED, "host-gw")
    assert "ip route replace 10.244.1.0/24 via 172.31.2.3" in commands(host_gw["node-1"])
    assert "ip route replace 10.244.0.0/24 via 172.31.2.2" in commands(host_gw["node-2"])
    _, tunnels = plan(MULTI_HOMED, "udp")
    assert "UDP:172.31.2.3:8285,bind=172.31.2.2," in tunnels["node-1"]
    assert "UDP:172.31.2.2:8285,bind=172.31.2.3," in tunnels["node-2"]


# -- bgp -------------------------------------------------------------------------------------


def test_bgp_full_mesh_config():
    topology = parse_topology(TWO_NODES.replace("BACKEND", "bgp"))
    addresses = plan_addresses(topology)
    config = bgp.bird_config(backends.bgp_node(topology, addresses, "node-1"))
    assert "router id 172.31.0.2;" in config
    assert "route 10.244.0.0/24 blackhole;" in config
    assert "local as 64512;" in config
    assert "hold time 9;" in config and "keepalive time 3;" in config
    assert "import where net !~ [ 10.244.0.0/16+ ];" in config
    assert "export where source ~ [ RTS_BGP, RTS_STATIC ];" in config
    assert 'export where proto = "pods";' in config
    assert "protocol bgp peer_node_2 from labkit_peer {" in config
    assert "neighbor 172.31.0.3 as 64512;" in config
    assert "neighbor 172.31.0.4 as 64512;" in config
    assert "rr client" not in config


def test_bgp_route_reflectors_across_a_router():
    topology = parse_topology(TWO_RACKS.replace("BACKEND", "bgp"))
    addresses = plan_addresses(topology)
    reflector = backends.bgp_node(topology, addresses, "node-a1")
    client = backends.bgp_node(topology, addresses, "node-b1")
    assert reflector.reflector and not client.reflector
    assert [(p.node, p.rr_client) for p in reflector.peers] == [
        ("node-a2", True),
        ("node-b1", True),
        ("router", True),
    ]
    # A client peers with the reflector only, from its own rack, across the router.
    assert [(p.node, str(p.address), str(p.local)) for p in client.peers] == [
        ("node-a1", "172.31.1.3", "172.31.2.3")
    ]
    config = bgp.bird_config(reflector)
    assert 'export where proto = "pods" || source = RTS_BGP;' in config
    assert config.count("rr client;") == 3
    # The router learns every pod subnet (pod packets cross it unencapsulated)
    # and announces none.
    router = bgp.bird_config(backends.bgp_node(topology, addresses, "router"))
    assert "protocol bgp peer_node_a1 from labkit_peer {" in router
    assert "peer_node_b1" not in router
    assert "export none;" in router and "protocol static" not in router
    assert "multihop;" in config and "gateway recursive;" in config
    # The routes the next hops resolve through: the other rack via the router.
    underlay = backends.underlay_scripts(topology, addresses)
    assert "ip route replace 172.31.2.0/24 via 172.31.1.2" in underlay["node-a1"]
    assert "ip route replace 172.31.1.0/24 via 172.31.2.2" in underlay["node-b1"]
    assert "router" not in underlay


def test_bgp_start_script_checks_the_config_then_starts_bird_detached():
    topology, scripts = plan(TWO_NODES, "bgp")
    lines = scripts["node-3"].splitlines()
    assert "bird -p -c /etc/bird/bird.conf" in lines
    assert lines[-1] == (
        "bird -c /etc/bird/bird.conf -s /run/bird/bird.ctl -P /run/bird/bird.pid "
        "> /var/log/labkit/bird.out 2>&1 < /dev/null"
    )
    assert set(scripts) == set(topology.member_nodes())
    _, with_router = plan(TWO_RACKS, "bgp")
    assert set(with_router) == {"node-a1", "node-a2", "node-b1", "router"}


PROTOCOLS = """\
BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     11:49:20.047
kernel1    Kernel     master4    up     11:49:20.047
pods       Static     master4    up     11:49:20.047
peer_node_2 BGP        ---        up     11:49:24.002  Established
peer_node_3 BGP        ---        start  11:50:40.048  Idle          BGP Error: Hold timer expired
"""


def test_parse_birdc_show_protocols():
    parsed = bgp.parse_protocols(PROTOCOLS)
    assert set(parsed) == {"device1", "kernel1", "pods", "peer_node_2", "peer_node_3"}
    assert parsed["peer_node_2"].established
    assert not parsed["peer_node_3"].established
    assert parsed["peer_node_3"].info == "Idle          BGP Error: Hold timer expired"
    assert parsed["peer_node_3"].state == "start"


def test_parse_bird_routes_in_the_kernel():
    output = (
        "blackhole 10.244.0.0/24 metric 32 \n10.244.1.0/24 via 172.20.1.3 dev eth0 metric 32 \n"
    )
    assert bgp.parse_bird_routes(output) == {
        IPv4Network("10.244.0.0/24"),
        IPv4Network("10.244.1.0/24"),
    }


# -- kernel needs: what the host lacks fails before anything is created ------------------


def fake_host(monkeypatch, **ok: bool) -> None:
    """What the probes would have found (they need Docker; this is about the decision)."""
    table = {
        name: {"ok": value, "detail": "" if value else "Unknown device type."}
        for name, value in ok.items()
        if name != "l2_underlay"
    }
    monkeypatch.setattr(features, "kernel_features", lambda: table)
    underlay = {"ok": ok.get("l2_underlay", True), "detail": "drops frames outside the subnet"}
    monkeypatch.setattr(features, "engine_features", lambda: {"l2-underlay": underlay})


@pytest.mark.parametrize(("backend", "feature"), [("udp", "tun"), ("vxlan", "vxlan")])
def test_a_backend_without_its_kernel_feature_is_refused_with_the_reason(
    monkeypatch, backend, feature
):
    fake_host(monkeypatch, tun=feature != "tun", vxlan=feature != "vxlan")
    topology = parse_topology(TWO_NODES.replace("BACKEND", backend))
    with pytest.raises(FeatureMissing) as caught:
        check_pod_network(topology)
    assert str(caught.value) == (
        f"backend {backend} needs {feature}, "
        f"but the host kernel lacks {feature} (Unknown device type.)"
    )


@pytest.mark.parametrize("backend", ["host-gw", "bgp", "none"])
def test_backends_without_kernel_needs_pass(monkeypatch, backend):
    fake_host(monkeypatch, tun=False, vxlan=False)
    check_pod_network(parse_topology(TWO_NODES.replace("BACKEND", backend)))


@pytest.mark.parametrize("backend", ["host-gw", "bgp"])
def test_unencapsulated_backends_need_an_underlay_that_carries_pod_addresses(monkeypatch, backend):
    fake_host(monkeypatch, tun=True, vxlan=True, l2_underlay=False)
    with pytest.raises(FeatureMissing) as caught:
        check_pod_network(parse_topology(TWO_NODES.replace("BACKEND", backend)))
    assert str(caught.value) == (
        f"backend {backend} needs l2-underlay, "
        "but the engine's host drops frames outside the subnet"
    )


def test_a_routed_underlay_needs_it_whatever_the_backend(monkeypatch):
    fake_host(monkeypatch, tun=True, vxlan=True, l2_underlay=False)
    check_pod_network(parse_topology(TWO_NODES.replace("BACKEND", "vxlan")))
    with pytest.raises(
        FeatureMissing, match=r"a routed underlay \(router nodes\) needs l2-underlay"
    ):
        check_pod_network(parse_topology(TWO_RACKS.replace("BACKEND", "vxlan")))


# -- bad input: the place in the file, exit code 2 ----------------------------------------


def test_unknown_backend_names_its_line():
    (message,) = problems(TWO_NODES.replace("BACKEND", "quantum"))
    assert message.startswith("t.yaml:9:12: cluster.backend: must be 'none', 'vxlan'")
    assert "(got 'quantum')" in message


def test_host_gw_across_a_router_says_which_nodes_are_not_adjacent():
    (message,) = problems(TWO_RACKS.replace("BACKEND", "host-gw"))
    assert message.startswith(
        "t.yaml:11:12: cluster.backend: host-gw routes each node's pod subnet"
    )
    assert "node-a1 (on rack-a) and node-b1 (on rack-b)" in message
    assert "node-a2 (on rack-a) and node-b1 (on rack-b)" in message
    assert "node-a1 (on rack-a) and node-a2" not in message
    assert "use vxlan, udp or bgp" in message


@pytest.mark.parametrize("backend", ["vxlan", "udp", "bgp"])
def test_the_other_backends_cross_the_router(backend):
    parse_topology(TWO_RACKS.replace("BACKEND", backend))


def test_a_router_that_is_not_on_both_networks():
    text = (
        TWO_RACKS.replace("BACKEND", "vxlan")
        .replace(
            "  rack-b: {subnet: 172.31.2.0/24}\n",
            "  rack-b: {subnet: 172.31.2.0/24}\n  rack-c: {subnet: 172.31.3.0/24}\n",
        )
        .replace("node-b1: {networks: [rack-b]}", "node-b1: {networks: [rack-c]}")
    )
    (message,) = problems(text)
    assert message == (
        "t.yaml:10:23: nodes.node-b1.networks: node node-b1 (on rack-c) cannot reach "
        "node-a1 (on rack-a), node-a2 (on rack-a): no router is on both networks, "
        "and the vxlan backend needs every node to reach every other"
    )


def test_a_static_route_via_a_router_that_is_not_on_the_destination():
    text = (
        TWO_RACKS.replace("BACKEND", "vxlan")
        .replace(
            "  rack-b: {subnet: 172.31.2.0/24}\n",
            "  rack-b: {subnet: 172.31.2.0/24}\n  rack-c: {subnet: 172.31.3.0/24}\n",
        )
        .replace(
            "node-a2: {networks: [rack-a]}",
            "node-a2: {networks: [rack-a], routes: {rack-c: router}}",
        )
    )
    (message,) = problems(text)
    assert message.startswith("t.yaml:9:50: nodes.node-a2.routes.rack-c: router 'router' is not on")
    assert "network 'rack-c' (it is on rack-a, rack-b)" in message


@pytest.mark.parametrize("asn", [0, 4294967296])
def test_as_number_out_of_range(asn):
    text = TWO_NODES.replace("BACKEND", "bgp") + f"  bgp: {{asn: {asn}}}\n"
    (message,) = problems(text)
    assert message == f"t.yaml:10:14: cluster.bgp.asn: AS number {asn} is out of range 1-4294967295"


def test_a_route_reflector_that_is_not_a_node():
    text = TWO_RACKS.replace("BACKEND", "bgp").replace(
        "route_reflectors: [node-a1]", "route_reflectors: [node-a1, node-c9]"
    )
    (message,) = problems(text)
    assert message == (
        "t.yaml:12:37: cluster.bgp.route_reflectors.1: route reflector 'node-c9' is not a node "
        "(cluster nodes: node-a1, node-a2, node-b1)"
    )


def test_a_route_reflector_that_is_the_router():
    text = TWO_RACKS.replace("BACKEND", "bgp").replace(
        "route_reflectors: [node-a1]", "route_reflectors: [router]"
    )
    (message,) = problems(text)
    assert message.endswith(
        "cluster.bgp.route_reflectors.0: route reflector 'router' is a router node, "
        "not a cluster node (cluster nodes: node-a1, node-a2, node-b1)"
    )


def test_keepalive_must_be_shorter_than_the_hold_time():
    text = TWO_NODES.replace("BACKEND", "bgp") + "  bgp: {hold_time: 3, keepalive: 3}\n"
    (message,) = problems(text)
    assert message.startswith("t.yaml:10:34: cluster.bgp.keepalive: keepalive 3 s must be shorter")


def test_cli_validate_exits_2_with_the_place(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TWO_RACKS.replace("BACKEND", "host-gw"))
    result = CliRunner().invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:11:12: cluster.backend: host-gw" in " ".join(result.output.split())


# -- the shipped topologies ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["vxlan", "host-gw", "udp", "bgp"])
def test_backend_topologies_share_one_layout(backend):
    topology = load_topology(ROOT / "topologies" / f"backend-{backend}.yaml")
    reference = load_topology(ROOT / "topologies" / "backend-vxlan.yaml")
    assert topology.cluster.backend == backend
    assert topology.nodes == reference.nodes
    assert topology.pods == reference.pods


def test_two_racks_routes_each_rack_through_the_router():
    topology = load_topology(ROOT / "topologies" / "two-racks.yaml")
    addresses = plan_addresses(topology)
    underlay = backends.underlay_scripts(topology, addresses)
    router_a = addresses.node_ips["router"]["rack-a"]
    assert set(underlay) == {"node-a1", "node-a2", "node-b1", "node-b2"}
    assert f"via {router_a}" in underlay["node-a1"]


def test_a_macvlan_underlay_needs_macvlan_and_not_the_bridge_rule_of_host_gw():
    text = "name: t\nnetworks:\n  u: {driver: macvlan}\nnodes:\n  a: {}\n  b: {}\ncluster: {backend: host-gw}\n"
    needs = dict(backends.needed_features(parse_topology(text)))
    assert needs["macvlan"] == "networks.u.driver" and "l2-underlay" not in needs
    bridged = dict(
        backends.needed_features(parse_topology(text.replace("driver: macvlan", "mtu: 1500")))
    )
    assert "l2-underlay" in bridged and "macvlan" not in bridged
