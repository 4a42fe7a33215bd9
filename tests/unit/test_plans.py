"""The generated node plans: CNI config, pod scripts, VXLAN and underlay routes."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network

from labkit.dataplane import backends, nodes, pods, vxlan
from labkit.dataplane.script import commands
from labkit.topology import parse_topology, plan_addresses

TOPOLOGY = """\
name: t
nodes:
  node-1: {}
  node-2: {}
  node-3: {}
pods:
  web: {node: node-2, run: [echo-server, "sleep infinity", echo-server --http-port 81]}
"""


def test_conflist_is_bridge_host_local_and_portmap():
    conf = pods.conflist(IPv4Network("10.244.1.0/24"), 1450)
    bridge, portmap = conf["plugins"]  # type: ignore[misc]
    assert bridge["type"] == "bridge" and bridge["bridge"] == "cni0" and bridge["isGateway"]
    assert bridge["ipMasq"] is False and bridge["mtu"] == 1450
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24", "gateway": "10.244.1.1"}]]
    assert portmap == {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}


def test_ptp_conflist_routes_each_pod_and_the_node_refuses_the_rest_of_its_block():
    subnet = IPv4Network("10.244.1.0/24")
    ptp, portmap = pods.conflist(subnet, 1450, "ptp")["plugins"]  # type: ignore[misc]
    assert ptp["type"] == "ptp" and ptp["ipMasq"] is False and ptp["mtu"] == 1450
    assert ptp["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24", "gateway": "10.244.1.1"}]]
    assert portmap["type"] == "portmap"
    setup = pods.node_setup_script(subnet, 1450, "ptp")
    assert "ip route replace unreachable 10.244.1.0/24" in setup
    assert "unreachable" not in pods.node_setup_script(subnet, 1450)


def test_the_topology_picks_the_plugin_every_node_is_set_up_with():
    topology = parse_topology(TOPOLOGY.replace("pods:", "cluster: {cni_plugin: ptp}\npods:"))
    scripts = nodes.node_scripts(topology, plan_addresses(topology))
    assert all('"type": "ptp"' in text for text in scripts.values())
    assert parse_topology(TOPOLOGY).cluster.cni_plugin == "bridge"


def test_container_names_are_program_names_numbered_when_repeated():
    names = pods.container_names(["echo-server", "sleep infinity", "echo-server --http-port 81"])
    assert list(names) == ["echo-server", "sleep", "echo-server-2"]


def test_pod_add_script_pins_the_ip_and_starts_each_container():
    spec = pods.PodSpec("web", "node-2", "default", IPv4Address("10.244.1.2"), ("echo-server",))
    text = pods.pod_add_script(spec)
    assert "ip netns add web" in commands(text)
    (entry,) = _cni_entries(text)
    assert entry["pod"] == "web" and entry["netns"] == "/var/run/netns/web"
    assert entry["args"].startswith("IgnoreUnknown=1;IP=10.244.1.2;")
    assert entry["out"] == "/var/lib/labkit/pods/web.cni.json"
    assert "LABKIT_POD=web setsid sh -c" in text and "POD_IP=10.244.1.2" in text
    # The pid file names the session as it starts: the next look counts it alive.
    assert "& echo $! > /var/lib/labkit/pods/web/echo-server.pid" in text
    assert "/var/log/labkit/pods/web/echo-server.log" in text


def _cni_entries(text: str) -> list[dict]:
    """The pods one `labkit-cni add-all` of a script wires (its heredoc's JSON lines)."""
    assert text.count("labkit-cni add-all") == 1
    body = text.split("labkit-cni add-all <<'LABKIT_PODS'\n", 1)[1].split("\nLABKIT_PODS", 1)[0]
    return [json.loads(line) for line in body.splitlines()]


def test_a_nodes_pods_are_wired_by_one_cni_process_and_a_host_network_pod_by_none():
    specs = [
        pods.PodSpec(name, "node-2", "default", IPv4Address(f"10.244.1.{i + 2}"), ("echo-server",))
        for i, name in enumerate(["a", "b", "c"])
    ]
    host = pods.PodSpec(
        "agent", "node-2", "default", IPv4Address("10.0.0.2"), ("sleep 1",), host_network=True
    )
    text = pods.pods_add_script([*specs, host])
    assert [e["pod"] for e in _cni_entries(text)] == ["a", "b", "c"]
    assert "ip netns add agent" not in text and "LABKIT_POD=agent" in text
    mapped = pods.PodSpec(
        "m",
        "n",
        "default",
        IPv4Address("10.244.1.9"),
        (),
        port_mappings=({"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},),
    )
    assert _cni_entries(pods.pod_add_script(mapped))[0]["capArgs"] == {
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
    }


def test_vxlan_script_programs_every_peer():
    text = commands(
        vxlan.vxlan_script(
            IPv4Address("172.20.0.2"),
            IPv4Network("10.244.0.0/24"),
            {IPv4Network("10.244.1.0/24"): IPv4Address("172.20.0.3")},
        )
    )
    assert "type vxlan id 1 local 172.20.0.2" in text and "dstport 8472 nolearning" in text
    assert "address 0e:6b:ac:14:00:02" in text
    assert "ip link add flannel.1 mtu 1450 " in text
    assert "ip addr add 10.244.0.0/32 dev flannel.1" in text
    assert (
        "ip neigh replace 10.244.1.0 lladdr 0e:6b:ac:14:00:03 dev flannel.1 nud permanent" in text
    )
    assert "bridge fdb append 0e:6b:ac:14:00:03 dev flannel.1 dst 172.20.0.3" in text
    assert "ip route replace 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink" in text


def test_backend_scripts_cover_every_member_with_its_peers():
    topology = parse_topology(TOPOLOGY)
    addresses = plan_addresses(topology)
    scripts = backends.backend_scripts(topology, addresses)
    assert set(scripts) == {"node-1", "node-2", "node-3"}
    assert commands(scripts["node-1"]).count("bridge fdb append") == 2
    assert backends.pod_mtu(topology) == 1450


def test_routes_through_a_router_to_the_other_rack():
    topology = parse_topology(
        """\
name: t
networks: {rack-a: {subnet: 192.168.10.0/24}, rack-b: {subnet: 192.168.20.0/24}}
nodes:
  router: {networks: [rack-a, rack-b], roles: [router]}
  a-1: {networks: [rack-a]}
  b-1: {networks: [rack-b]}
"""
    )
    addresses = plan_addresses(topology)
    scripts = backends.underlay_scripts(topology, addresses)
    assert "ip route replace 192.168.20.0/24 via 192.168.10.2" in scripts["a-1"]
    assert "ip route replace 192.168.10.0/24 via 192.168.20.2" in scripts["b-1"]
    assert "router" not in scripts
