"""After a policy change a node deletes the conntrack entries of flows the new
rules deny: which entries, decided from the same allows the rules are made of."""

from __future__ import annotations

import json
import subprocess
import sys

from test_policy_render import BASE, plan_for

from labkit.dataplane import policy

# BASE pod IPs: x-a 10.244.0.2 (node-1), x-b 10.244.1.2 and y-a 10.244.1.3 (node-2).
UDP_Y_A_TO_X_A = (
    "udp      17 29 src=10.244.1.3 dst=10.244.0.2 sport=40001 dport=81 "
    "src=10.244.0.2 dst=10.244.1.3 sport=81 dport=40001 mark=0 use=1"
)
TCP_VIA_A_SERVICE = (  # y-a -> 10.96.0.10:80, DNATed to x-a:8080
    "tcp      6 431999 ESTABLISHED src=10.244.1.3 dst=10.96.0.10 sport=5000 dport=80 "
    "src=10.244.0.2 dst=10.244.1.3 sport=8080 dport=5000 [ASSURED] mark=0 use=1"
)
ICMP_X_B_TO_X_A = (
    "icmp     1 29 src=10.244.1.2 dst=10.244.0.2 type=8 code=0 id=7 "
    "src=10.244.0.2 dst=10.244.1.2 type=0 code=0 id=7 mark=0 use=1"
)


def flow(line: str) -> dict:
    parsed = policy.parse_conntrack_line(line)
    assert parsed is not None
    return parsed


def test_a_conntrack_line_is_read_as_forward_sees_the_flow():
    assert flow(TCP_VIA_A_SERVICE) == {
        "protocol": "tcp",
        "state": "ESTABLISHED",
        "src": "10.244.1.3",
        "orig_dst": "10.96.0.10",
        "dst": "10.244.0.2",  # after DNAT
        "sport": 5000,
        "orig_dport": 80,
        "dport": 8080,
    }
    assert flow(ICMP_X_B_TO_X_A)["dport"] is None
    assert policy.parse_conntrack_line("conntrack v1.4.7: 3 flow entries have been shown.") is None


def test_an_isolated_namespace_denies_what_it_allowed_before():
    isolated = BASE.replace("x: {labels: {ns: x}}", "x: {labels: {ns: x}, isolated: true}")
    rules = plan_for(base=isolated)["node-1"].flow_rules
    assert policy.flow_denied(rules, flow(UDP_Y_A_TO_X_A))  # y -> x: no longer
    assert policy.flow_denied(rules, flow(TCP_VIA_A_SERVICE))
    assert not policy.flow_denied(rules, flow(ICMP_X_B_TO_X_A))  # x -> x: still


def test_ports_and_protocols_decide_as_the_rules_do():
    only_udp_81 = (
        "policies:\n  p: {namespace: x, pod_selector: {match_labels: {pod: a}},"
        " ingress: [{ports: [{protocol: UDP, port: 81}]}]}\n"
    )
    rules = plan_for(only_udp_81)["node-1"].flow_rules
    assert not policy.flow_denied(rules, flow(UDP_Y_A_TO_X_A))
    assert policy.flow_denied(rules, flow(TCP_VIA_A_SERVICE))
    assert policy.flow_denied(rules, flow(ICMP_X_B_TO_X_A))  # ICMP has no port to allow


def test_egress_is_judged_on_the_sources_node_only():
    deny_egress = "policies:\n  d: {namespace: y, policy_types: [Egress]}\n"
    plans = plan_for(deny_egress)
    assert policy.flow_denied(plans["node-2"].flow_rules, flow(UDP_Y_A_TO_X_A))
    assert not policy.flow_denied(plans["node-1"].flow_rules, flow(UDP_Y_A_TO_X_A))


def test_no_policy_denies_nothing():
    rules = plan_for()["node-1"].flow_rules
    assert rules == {}
    assert not policy.flow_denied(rules, flow(UDP_Y_A_TO_X_A))


def test_the_node_program_deletes_exactly_the_denied_entries(tmp_path):
    """Run the shipped program with a fake `conntrack` that lists and records deletes."""
    fake = tmp_path / "conntrack"
    closed_earlier = TCP_VIA_A_SERVICE.replace("ESTABLISHED", "TIME_WAIT").replace("5000", "5001")
    again_from_another_port = TCP_VIA_A_SERVICE.replace("5000", "5002")
    listing = "\n".join(
        [
            UDP_Y_A_TO_X_A,
            TCP_VIA_A_SERVICE,
            closed_earlier,
            again_from_another_port,
            ICMP_X_B_TO_X_A,
        ]
    )
    fake.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = -L ]; then cat <<"EOF"\n{listing}\nEOF\n'
        f'else echo "$@" >> {tmp_path}/deleted; fi\n'
    )
    fake.chmod(0o755)
    only_udp_81 = (
        "policies:\n  p: {namespace: x, pod_selector: {match_labels: {pod: a}},"
        " ingress: [{ports: [{protocol: UDP, port: 81}]}]}\n"
    )
    rules = plan_for(only_udp_81)["node-1"].flow_rules
    subprocess.run(
        [sys.executable, "-c", policy.prune_program(), json.dumps(rules)],
        check=True,
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
    )
    assert sorted((tmp_path / "deleted").read_text().splitlines()) == [
        "-D -p icmp --orig-src 10.244.1.2 --orig-dst 10.244.0.2 --reply-src 10.244.0.2",
        "-D -p tcp --orig-src 10.244.1.3 --orig-dst 10.96.0.10 --reply-src 10.244.0.2"
        " --orig-port-dst 80 --reply-port-src 8080",
    ]


def test_the_node_script_prunes_after_loading_the_rules():
    text = policy.node_script(plan_for("policies:\n  d: {namespace: x}\n")["node-1"])
    assert text.index("iptables-restore") < text.index("conntrack")
