"""Pod egress masquerading (ip-masq-agent's layout) and the servers a node runs."""

from __future__ import annotations

from ipaddress import IPv4Network

from labkit.dataplane import egress
from labkit.dataplane.nodes import node_scripts
from labkit.topology.addressing import plan_addresses
from labkit.topology.loader import parse_topology

TOPOLOGY = """
name: t
nodes:
  node-1: {}
  outside: {roles: [external], run: ["echo-server"]}
cluster:
  masquerade: {non_masquerade_cidrs: [192.0.2.0/24]}
"""


def test_pod_and_service_ranges_and_the_configured_cidrs_keep_the_pod_address():
    cluster = parse_topology(TOPOLOGY).cluster
    assert [str(c) for c in egress.non_masquerade_cidrs(cluster)] == [
        "10.244.0.0/16",
        "10.96.0.0/12",
        "192.0.2.0/24",
        "169.254.0.0/16",
    ]
    rules = egress.masquerade_rules(cluster)
    assert rules[:2] == ["*nat", ":IP-MASQ - [0:0]"]
    assert rules[-2].endswith("-j MASQUERADE") and rules[-1] == "COMMIT"  # last in the chain
    assert all("-j RETURN" in r for r in rules[2:-2])


def test_the_jump_is_added_once_for_the_nodes_own_pods():
    cluster = parse_topology(TOPOLOGY).cluster
    script = egress.masquerade_script(cluster, IPv4Network("10.244.3.0/24"))
    assert (
        "iptables -t nat -C POSTROUTING -s 10.244.3.0/24 -m addrtype ! --dst-type LOCAL" in script
    )
    assert "|| iptables -t nat -A POSTROUTING -s 10.244.3.0/24" in script
    assert "-D POSTROUTING -s 10.244.3.0/24" in egress.unmasquerade_script(
        cluster, IPv4Network("10.244.3.0/24")
    )


def test_node_scripts_masquerade_on_cluster_nodes_and_start_declared_servers():
    topology = parse_topology(TOPOLOGY)
    scripts = node_scripts(topology, plan_addresses(topology, []))
    assert "IP-MASQ" in scripts["node-1"] and "IP-MASQ" not in scripts["outside"]
    assert "setsid -f sh -c" in scripts["outside"] and "echo-server" in scripts["outside"]
    off = parse_topology(TOPOLOGY.replace("masquerade: {", "masquerade: {enabled: false, "))
    assert "IP-MASQ" not in node_scripts(off, plan_addresses(off, []))["node-1"]
