"""kube-proxy's iptables mode, rendered: small cases against the expected text."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address

from kubeproxy_cases import CHANGED, EMPTY, KUBE_EP1, KUBE_SVC1, PLAN, WEB

from labkit.dataplane import kubeproxy_iptables as ipt
from labkit.dataplane.kubeproxy import EndpointPlan

# The parts both payloads below share (PLAN's full one, PLAN -> CHANGED's partial one).
FILTER_TABLE = """\
*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A KUBE-SERVICES -d 10.96.0.3/32 -p tcp -m comment --comment "default/empty has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
"""
NAT_TOP_AND_WEB_CHAINS = """\
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-CDGGSHYLG3RE2FKL - [0:0]
:KUBE-EXT-CDGGSHYLG3RE2FKL - [0:0]
:KUBE-SEP-QA4PSDNF5R2OJOPA - [0:0]
:KUBE-SEP-UIQK3OSOSTRHRPBX - [0:0]
"""
NAT_TOP_RULES = """\
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-CDGGSHYLG3RE2FKL
-A KUBE-NODEPORTS -p tcp -m comment --comment default/web:http -m tcp --dport 30080 -j KUBE-EXT-CDGGSHYLG3RE2FKL
-A KUBE-SERVICES -d 10.96.0.2/32 -p udp -m comment --comment "default/dns cluster IP" -m udp --dport 53 -j KUBE-SVC-CR2V5ZP3AXU5XYAF
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
"""
WEB_MASQ = """\
-A KUBE-SVC-CDGGSHYLG3RE2FKL ! -s 10.244.0.0/16 -d 10.96.0.1/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
"""
WEB_EXT_RULES = """\
-A KUBE-EXT-CDGGSHYLG3RE2FKL -m comment --comment "masquerade traffic for default/web:http external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-CDGGSHYLG3RE2FKL -j KUBE-SVC-CDGGSHYLG3RE2FKL
"""

FULL = (
    FILTER_TABLE
    + NAT_TOP_AND_WEB_CHAINS
    + """\
:KUBE-SVC-CR2V5ZP3AXU5XYAF - [0:0]
:KUBE-SEP-DQ6NHHCTWXWUGO7E - [0:0]
:KUBE-SVC-OLDOLDOLDOLDOLD - [0:0]
"""
    + NAT_TOP_RULES
    + WEB_MASQ
    + """\
-A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http -> 10.244.0.2:8080" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-QA4PSDNF5R2OJOPA
-A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http -> 10.244.1.2:8080" -j KUBE-SEP-UIQK3OSOSTRHRPBX
"""
    + WEB_EXT_RULES
    + """\
-A KUBE-SEP-QA4PSDNF5R2OJOPA -s 10.244.0.2/32 -m comment --comment default/web:http -j KUBE-MARK-MASQ
-A KUBE-SEP-QA4PSDNF5R2OJOPA -p tcp -m comment --comment default/web:http -m tcp -j DNAT --to-destination 10.244.0.2:8080
-A KUBE-SEP-UIQK3OSOSTRHRPBX -s 10.244.1.2/32 -m comment --comment default/web:http -j KUBE-MARK-MASQ
-A KUBE-SEP-UIQK3OSOSTRHRPBX -p tcp -m comment --comment default/web:http -m tcp -j DNAT --to-destination 10.244.1.2:8080
-A KUBE-SVC-CR2V5ZP3AXU5XYAF ! -s 10.244.0.0/16 -d 10.96.0.2/32 -p udp -m comment --comment "default/dns cluster IP" -m udp --dport 53 -j KUBE-MARK-MASQ
-A KUBE-SVC-CR2V5ZP3AXU5XYAF -m comment --comment "default/dns -> 10.244.0.3:5353" -m recent --rcheck --seconds 60 --reap --name KUBE-SEP-DQ6NHHCTWXWUGO7E --mask 255.255.255.255 --rsource -j KUBE-SEP-DQ6NHHCTWXWUGO7E
-A KUBE-SVC-CR2V5ZP3AXU5XYAF -m comment --comment "default/dns -> 10.244.0.3:5353" -j KUBE-SEP-DQ6NHHCTWXWUGO7E
-A KUBE-SEP-DQ6NHHCTWXWUGO7E -s 10.244.0.3/32 -m comment --comment default/dns -j KUBE-MARK-MASQ
-A KUBE-SEP-DQ6NHHCTWXWUGO7E -p udp -m comment --comment default/dns -m recent --set --name KUBE-SEP-DQ6NHHCTWXWUGO7E --mask 255.255.255.255 --rsource -m udp -j DNAT --to-destination 10.244.0.3:5353
-X KUBE-SVC-OLDOLDOLDOLDOLD
COMMIT
"""
)

PARTIAL = (
    FILTER_TABLE
    + NAT_TOP_AND_WEB_CHAINS
    + NAT_TOP_RULES
    + WEB_MASQ
    + """\
-A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http -> 10.244.0.2:8080" -j KUBE-SEP-QA4PSDNF5R2OJOPA
"""
    + WEB_EXT_RULES
    + """\
-A KUBE-SEP-QA4PSDNF5R2OJOPA -s 10.244.0.2/32 -m comment --comment default/web:http -j KUBE-MARK-MASQ
-A KUBE-SEP-QA4PSDNF5R2OJOPA -p tcp -m comment --comment default/web:http -m tcp -j DNAT --to-destination 10.244.0.2:8080
-X KUBE-SEP-UIQK3OSOSTRHRPBX
COMMIT
"""
)


def test_full_payload_is_kube_proxys_layout():
    assert ipt.render_full(PLAN, ["KUBE-SVC-OLDOLDOLDOLDOLD", "KUBE-SERVICES"]) == FULL


def test_partial_payload_rewrites_only_the_changed_service_and_drops_its_stale_chain():
    assert ipt.render_partial(PLAN, CHANGED) == PARTIAL


def test_partial_without_changes_rewrites_only_the_top_level_chains():
    payload = ipt.render_partial(PLAN, PLAN)
    assert "KUBE-SVC-" not in payload.split("*nat")[1].split("-A KUBE-SERVICES")[0]
    assert "-X " not in payload


def test_chain_names_match_kube_proxy():
    assert ipt.svc_chain(KUBE_SVC1) == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert ipt.sep_chain(KUBE_SVC1, KUBE_EP1) == "KUBE-SEP-SXIVWICOYRO3J4NJ"


def test_probabilities_split_evenly_and_the_last_rule_is_unconditional():
    assert [ipt.probability(i, 4) for i in range(3)] == [
        "0.2500000000", "0.3333333333", "0.5000000000",
    ]  # fmt: skip
    endpoints = tuple(EndpointPlan(IPv4Address(f"10.244.0.{i}"), 80) for i in range(2, 6))
    rules = ipt.service_rules(dataclasses.replace(WEB, endpoints=endpoints), PLAN).chains[
        ipt.svc_chain(WEB)
    ]
    picks = [r for r in rules if r.startswith(f"-A {ipt.svc_chain(WEB)} -m comment")]
    assert len(picks) == 4
    assert all("--probability" in r for r in picks[:3]) and "statistic" not in picks[3]


def test_a_service_without_endpoints_is_rejected_in_filter_and_has_no_nat_chains():
    assert ipt.service_chains(EMPTY, PLAN) == []
    assert ipt.service_rules(EMPTY, PLAN).filter == [
        "-A KUBE-SERVICES -d 10.96.0.3/32 -p tcp -m comment --comment "
        '"default/empty has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable'
    ]
    node_port = dataclasses.replace(EMPTY, node_port=30001)
    assert (
        "-m addrtype --dst-type LOCAL -m tcp --dport 30001 -j REJECT"
        in ipt.service_rules(node_port, PLAN).filter[1]
    )


def test_rule_count():
    assert ipt.rule_count(FULL) == FULL.count("\n-A ")
