"""Network policy and floating IPs: the pure planners' text, and the loader's checks."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from topology_problems import problems

from labkit.dataplane import floating, policy
from labkit.dataplane.faults import partition_script
from labkit.dataplane.shaping import netem_qdisc, parse_rate, tbf_qdisc
from labkit.dataplane.vxlan import underlay_device
from labkit.topology import parse_topology, plan_addresses
from labkit.topology.addressing import choose_pod_ip
from labkit.topology.model import IpBlock, LabelSelector, NetworkPolicy

BASE = """\
name: t
nodes:
  node-1: {}
  node-2: {}
  ext: {roles: [external]}
cluster:
  pod_cidr: 10.244.0.0/16
namespaces:
  x: {labels: {ns: x}}
  y: {labels: {ns: y}}
pods:
  x-a: {node: node-1, namespace: x, labels: {pod: a}, ports: [{name: http, port: 8080}]}
  x-b: {node: node-2, namespace: x, labels: {pod: b}}
  y-a: {node: node-2, namespace: y, labels: {pod: a}, ports: [{name: http, port: 9090}]}
"""


def plan_for(extra: str = "", base: str = BASE) -> dict[str, policy.NodePolicy]:
    topology = parse_topology(base + extra)
    addresses = plan_addresses(topology)
    return policy.plan(topology, addresses.pod_ips, addresses.pod_subnets)


def body(rules: policy.NodePolicy) -> list[str]:
    return [line for line in rules.payload.splitlines() if line.startswith("-A ")]


# Pod IPs of BASE: x-a 10.244.0.2 (node-1), x-b 10.244.1.2 and y-a 10.244.1.3 (node-2).
X_A_IN = policy.pod_chain("x-a", "Ingress")
X_B_EG = policy.pod_chain("x-b", "Egress")


def test_no_policy_leaves_only_the_stateful_rule():
    plans = plan_for()
    assert body(plans["node-1"]) == [
        "-A LABKIT-POLICY -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
    ]
    assert plans["node-1"].chains == ()
    assert set(plans) == {"node-1", "node-2"}  # cluster nodes only


def test_default_deny_ingress_is_an_empty_rule_list():
    plans = plan_for("policies:\n  deny: {namespace: x, policy_types: [Ingress]}\n")
    assert body(plans["node-1"])[1:] == [
        f'-A LABKIT-POLICY -d 10.244.0.2/32 -m comment --comment "pod x/x-a ingress" -j {X_A_IN}',
        f'-A {X_A_IN} -m comment --comment "pod x/x-a ingress default deny" '
        "-j REJECT --reject-with icmp-admin-prohibited",
    ]
    # x-b lives on node-2: its chain is there, not on node-1.
    assert policy.pod_chain("x-b", "Ingress") in plans["node-2"].chains


def test_policy_types_default_to_ingress_plus_egress_when_there_are_egress_rules():
    assert NetworkPolicy().types() == {"Ingress"}
    assert NetworkPolicy.model_validate({"egress": [{}]}).types() == {"Ingress", "Egress"}
    assert NetworkPolicy(policy_types=["Egress"]).types() == {"Egress"}


def test_namespace_selector_and_pod_selector_together_mean_both():
    plans = plan_for(
        "policies:\n"
        "  p:\n"
        "    namespace: x\n"
        "    pod_selector: {match_labels: {pod: a}}\n"
        "    ingress:\n"
        "      - from: [{namespace_selector: {match_labels: {ns: y}}, pod_selector: {match_labels: {pod: a}}}]\n"
        "        ports: [{port: 80}, {protocol: UDP, port: 53, end_port: 60}]\n"
    )
    assert body(plans["node-1"])[2:] == [
        f'-A {X_A_IN} -s 10.244.1.3/32 -p tcp -m tcp --dport 80 -m comment --comment "policy p" -j RETURN',
        f'-A {X_A_IN} -s 10.244.1.3/32 -p udp -m udp --dport 53:60 -m comment --comment "policy p" -j RETURN',
        f'-A {X_A_IN} -m comment --comment "pod x/x-a ingress default deny" '
        "-j REJECT --reject-with icmp-admin-prohibited",
    ]


def test_a_pod_selector_alone_stays_in_the_policys_namespace():
    plans = plan_for(
        "policies:\n"
        "  p: {namespace: x, pod_selector: {match_labels: {pod: a}}, ingress: [{from: [{pod_selector: {}}]}]}\n"
    )
    allowed = [line for line in body(plans["node-1"]) if line.endswith("RETURN") and X_A_IN in line]
    assert allowed == [
        f'-A {X_A_IN} -s 10.244.0.2/32 -m comment --comment "policy p" -j RETURN',
        f'-A {X_A_IN} -s 10.244.1.2/32 -m comment --comment "policy p" -j RETURN',
    ]


def test_egress_with_an_ip_block_and_exceptions():
    plans = plan_for(
        "policies:\n"
        "  p:\n"
        "    namespace: x\n"
        "    pod_selector: {match_labels: {pod: b}}\n"
        "    egress: [{to: [{ip_block: {cidr: 10.244.0.0/22, except: [10.244.1.0/24, 10.244.2.4/30]}}]}]\n"
    )
    assert [line.split(" -m comment")[0] for line in body(plans["node-2"]) if X_B_EG in line][
        1:-1
    ] == [
        f"-A {X_B_EG} -d 10.244.0.0/24",
        f"-A {X_B_EG} -d 10.244.2.0/30",
        f"-A {X_B_EG} -d 10.244.2.8/29",
        f"-A {X_B_EG} -d 10.244.2.16/28",
        f"-A {X_B_EG} -d 10.244.2.32/27",
        f"-A {X_B_EG} -d 10.244.2.64/26",
        f"-A {X_B_EG} -d 10.244.2.128/25",
        f"-A {X_B_EG} -d 10.244.3.0/24",
    ]
    dispatch = [line for line in body(plans["node-2"]) if line.startswith("-A LABKIT-POLICY")]
    assert dispatch[1].startswith("-A LABKIT-POLICY -s 10.244.1.2/32 ") and dispatch[1].endswith(
        X_B_EG
    )


def test_egress_dispatch_comes_before_ingress_dispatch():
    plans = plan_for("policies:\n  p: {namespace: x, policy_types: [Ingress, Egress]}\n")
    dispatch = [line for line in body(plans["node-2"]) if line.startswith("-A LABKIT-POLICY -")]
    assert [line.split()[2] for line in dispatch] == ["-m", "-s", "-d"]


def test_named_ports_resolve_on_the_selected_pod_for_ingress_and_on_the_peer_for_egress():
    plans = plan_for(
        "policies:\n"
        "  in: {namespace: x, pod_selector: {match_labels: {pod: a}}, ingress: [{ports: [{port: http}]}]}\n"
        "  out: {namespace: x, pod_selector: {match_labels: {pod: b}}, policy_types: [Egress],"
        " egress: [{ports: [{port: http}]}]}\n"
    )
    assert any(
        "-p tcp -m tcp --dport 8080" in line and X_A_IN in line for line in body(plans["node-1"])
    )
    egress = [line for line in body(plans["node-2"]) if line.startswith(f"-A {X_B_EG} -d")]
    assert [line.split(" -m comment")[0] for line in egress] == [
        f"-A {X_B_EG} -d 10.244.0.2/32 -p tcp -m tcp --dport 8080",
        f"-A {X_B_EG} -d 10.244.1.3/32 -p tcp -m tcp --dport 9090",
    ]


def test_an_isolated_namespace_allows_itself_the_nodes_and_the_outside():
    base = BASE.replace("x: {labels: {ns: x}}", "x: {labels: {ns: x}, isolated: true}")
    rules = [
        line.split(" -m comment")[0]
        for line in body(plan_for(base=base)["node-1"])
        if X_A_IN in line
    ]
    assert rules[1:] == [
        f"-A {X_A_IN} -s 10.244.0.2/32",
        f"-A {X_A_IN} -s 10.244.1.2/32",
        f"-A {X_A_IN} -s 10.244.0.0/32",
        f"-A {X_A_IN} -s 10.244.0.1/32",
        f"-A {X_A_IN} -s 10.244.1.0/32",
        f"-A {X_A_IN} -s 10.244.1.1/32",
        f"-A {X_A_IN} ! -s 10.244.0.0/16",
        f"-A {X_A_IN}",
    ]


def test_node_script_loads_atomically_keeps_the_hook_first_and_drops_stale_chains():
    text = policy.node_script(plan_for("policies:\n  d: {namespace: x}\n")["node-1"])
    assert text.startswith("set -e\niptables-restore --noflush <<'LABKIT_EOF'\n*filter\n")
    assert (
        'if [ "$(iptables -S FORWARD | sed -n 2p)" != "-A FORWARD -j LABKIT-POLICY" ]; then' in text
    )
    assert f'case " {X_A_IN} " in' in text


def test_selector_expressions():
    labels = {"app": "web", "tier": "front"}
    expression = lambda op, *values: LabelSelector.model_validate(  # noqa: E731
        {"match_expressions": [{"key": "tier", "operator": op, "values": list(values)}]}
    )
    assert policy.selector_matches(expression("In", "front", "back"), labels)
    assert not policy.selector_matches(expression("NotIn", "front"), labels)
    assert policy.selector_matches(expression("Exists"), labels)
    assert not policy.selector_matches(expression("DoesNotExist"), labels)
    assert policy.selector_matches(LabelSelector(), {})


def test_block_networks_subtracts_exceptions():
    block = IpBlock.model_validate(
        {"cidr": "10.0.0.0/24", "except": ["10.0.0.0/25", "10.0.0.128/26"]}
    )
    assert policy.block_networks(block) == [IPv4Network("10.0.0.192/26")]
    assert policy.block_networks(IpBlock.model_validate({"cidr": "10.0.0.7/24"})) == [
        IPv4Network("10.0.0.0/24")
    ]


def test_unknown_namespaces_are_allowed_and_reported():
    topology = parse_topology(
        BASE + "policies:\n"
        "  ghost: {namespace: nope}\n"
        "  from-nowhere: {namespace: x, ingress: [{from: [{namespace_selector: {match_labels: {ns: nope}}}]}]}\n"
    )
    assert policy.warnings(topology) == [
        "policy ghost: namespace 'nope' is unknown, it selects no pod",
        "policy from-nowhere: namespace_selector {'match_labels': {'ns': 'nope'}} matches no known namespace",
    ]


# -- the loader's checks ------------------------------------------------------------------


def test_malformed_cidrs_and_ports_name_their_place():
    found = problems(
        BASE + "policies:\n"
        "  p:\n"
        "    namespace: x\n"
        "    ingress:\n"
        "      - from: [{ip_block: {cidr: 10.0.0.0/33, except: [nonsense]}},"
        " {ip_block: {cidr: 10.0.0.0/8, except: [192.168.0.0/24]}}]\n"
        "        ports: [{port: 70000}, {port: 80, end_port: 79}]\n"
    )
    assert found == [
        "t.yaml:19:34: policies.p.ingress.0.from.0.ip_block.cidr: '10.0.0.0/33' is not a CIDR (like 10.0.0.0/8)",
        "t.yaml:19:56: policies.p.ingress.0.from.0.ip_block.except.0: 'nonsense' is not a CIDR (like 10.0.0.0/8)",
        "t.yaml:19:108: policies.p.ingress.0.from.1.ip_block.except.0: "
        "192.168.0.0/24 is not inside the block 10.0.0.0/8",
        "t.yaml:20:24: policies.p.ingress.0.ports.0.port: port 70000 is out of range 1-65535",
        "t.yaml:20:53: policies.p.ingress.0.ports.1.end_port: end_port 79 is below port 80",
    ]


def test_a_peer_is_selectors_or_an_ip_block():
    found = problems(
        BASE
        + "policies:\n  p: {namespace: x, egress: [{to: [{}, {ip_block: {cidr: 10.0.0.0/8}, pod_selector: {}}]}]}\n"
    )
    assert [f.split(": ", 2)[2] for f in found] == [
        "a peer needs pod_selector, namespace_selector or ip_block",
        "ip_block cannot be combined with pod_selector or namespace_selector",
    ]


def test_pinned_ip_outside_its_node_subnet_or_twice():
    found = problems(
        BASE.replace("x-b: {node: node-2,", "x-b: {node: node-2, ip: 10.244.0.9,").replace(
            "y-a: {node: node-2,", "y-a: {node: node-2, ip: 10.244.1.1,"
        )
        + "  z-1: {node: node-1, ip: 10.244.0.9}\n"
    )
    assert [f.split(": ", 1)[1] for f in found] == [
        "pods.x-b.ip: 10.244.0.9 is outside node 'node-2''s pod subnet 10.244.1.0/24",
        "pods.y-a.ip: 10.244.1.1 is the network, gateway or broadcast address of node 'node-2''s subnet 10.244.1.0/24",
        "pods.z-1.ip: 10.244.0.9 is pinned by pod 'x-b' too",
    ]


def test_floating_ips_must_stay_out_of_the_cluster_ranges():
    found = problems(
        BASE + "floating_ips:\n"
        "  in-pods: {ip: 10.244.9.9, pod: x-a}\n"
        "  in-services: {ip: 10.96.0.10, pod: x-a}\n"
        "  in-underlay-pool: {ip: 172.20.5.5, pod: x-a}\n"
        "  fine: {ip: 192.0.2.10, pod: x-a}\n"
        "  twice: {ip: 192.0.2.10, pod: nobody}\n"
    )
    assert [f.split(": ", 1)[1] for f in found] == [
        "floating_ips.in-pods.ip: 10.244.9.9 is inside the pod CIDR (10.244.0.0/16)",
        "floating_ips.in-services.ip: 10.96.0.10 is inside the service CIDR (10.96.0.0/12)",
        "floating_ips.in-underlay-pool.ip: 172.20.5.5 is inside the pool underlay subnets are picked from "
        "(172.20.0.0/14)",
        "floating_ips.twice.pod: unknown pod 'nobody' (known: x-a, x-b, y-a)",
        "floating_ips.twice.ip: 192.0.2.10 is floating IP 'fine' already",
    ]


# -- floating IPs ---------------------------------------------------------------------------------


def test_floating_ip_is_owned_by_the_pods_node_and_routed_by_the_others():
    topology = parse_topology(BASE + "floating_ips:\n  web: {ip: 192.0.2.10, pod: x-a}\n")
    addresses = plan_addresses(topology)
    scripts = floating.plan(topology, addresses)
    assert set(scripts) == {"node-1", "node-2", "ext"}
    owner = scripts["node-1"]
    assert (
        '-A LABKIT-FLOATING -d 192.0.2.10/32 -m comment --comment "floating web -> pod x-a" '
        "-j DNAT --to-destination 10.244.0.2" in owner
    )
    assert f"ip addr add 192.0.2.10/32 dev {underlay_device(IPv4Address('172.20.0.2'))}" in owner
    assert "ip route replace 192.0.2.10/32" not in owner
    for other in ("node-2", "ext"):
        assert "DNAT" not in scripts[other]
        assert "ip route replace 192.0.2.10/32 via ${gw:-172.20.0.2}" in scripts[other]


def test_an_unbound_floating_ip_is_removed_everywhere():
    topology = parse_topology(BASE + "floating_ips:\n  web: {ip: 192.0.2.10, pod: x-a}\n")
    addresses = plan_addresses(topology)
    del topology.pods["x-a"], addresses.pod_ips["x-a"]
    for text in floating.plan(topology, addresses).values():
        assert "192.0.2.10/32 via" not in text and "ip addr add" not in text
        assert "ip route del 192.0.2.10/32" in text


# -- sticky pod IPs and faults -------------------------------------------------------------------


def test_choose_pod_ip_prefers_the_pin_then_its_own_then_fresh_addresses():
    subnet = IPv4Network("10.244.1.0/24")
    used = [IPv4Address("10.244.1.2")]
    assert choose_pod_ip(subnet, used, pinned=IPv4Address("10.244.1.77")) == IPv4Address(
        "10.244.1.77"
    )
    assert choose_pod_ip(subnet, used, sticky="10.244.1.9") == IPv4Address("10.244.1.9")
    assert choose_pod_ip(subnet, used, sticky="10.244.7.9") == IPv4Address(
        "10.244.1.3"
    )  # other node's
    assert choose_pod_ip(subnet, used, reserved=["10.244.1.3"]) == IPv4Address("10.244.1.4")
    tiny = IPv4Network("10.244.1.0/30")  # .1 gateway, .2 the only host
    assert choose_pod_ip(tiny, [], reserved=["10.244.1.2"]) == IPv4Address("10.244.1.2")


def test_fault_plans():
    assert parse_rate("20mbit") == 20e6
    assert tbf_qdisc("20mbit") == "tbf rate 20000000bit burst 50000 latency 50ms"
    assert tbf_qdisc("1mbit") == "tbf rate 1000000bit burst 32768 latency 50ms"
    assert netem_qdisc("50ms", "10ms", "1%") == "netem delay 50ms 10ms loss 1%"
    text = partition_script(["172.20.0.4"], ["02:42:ac:14:00:04"])
    assert "-A LABKIT-FAULT-PART-IN -s 172.20.0.4/32 -j DROP" in text
    assert "-A LABKIT-FAULT-PART-IN -m mac --mac-source 02:42:ac:14:00:04 -j DROP" in text
    assert "-A LABKIT-FAULT-PART-OUT -d 172.20.0.4/32 -j DROP" in text
    with pytest.raises(Exception, match="use a number"):
        parse_rate("fast")


def test_pod_add_script_first_removes_an_earlier_incarnation_and_fixes_the_mac():
    from labkit.dataplane import pods

    text = pods.pod_add_script(pods.PodSpec("web", "node-1", "default", IPv4Address("10.244.1.2")))
    from labkit.dataplane.script import commands

    lines = commands(text).splitlines()
    cleanup = lines.index("[ ! -e /var/run/netns/web ] || ip netns del web 2>/dev/null || true")
    # An earlier incarnation's CNI ADD (its cached result) is undone; a fresh pod skips it.
    assert lines[cleanup + 1] == (
        "[ ! -e /var/lib/labkit/cni/web.json ] || "
        "labkit-cni del web /var/run/netns/web >/dev/null 2>&1 || true"
    )
    assert lines.index("ip netns add web") == cleanup + 2
    assert ";MAC=0a:58:0a:f4:01:02" in text
    assert pods.pod_mac(IPv4Address("10.244.1.2")) == "0a:58:0a:f4:01:02"
