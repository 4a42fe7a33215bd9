"""kube-proxy's nftables mode, rendered: behaviour of the full and partial payloads.

The layout itself is checked against kube-proxy's own dump in test_kube_proxy_upstream.
"""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv4Network

from kubeproxy_cases import CHANGED, DNS, EMPTY, KUBE_EP1, KUBE_SVC1, PLAN, WEB

from labkit.dataplane import kubeproxy_nft as nft

T = "ip kube-proxy"
WEB_EP2 = "endpoint-SVLGPL42-default/web/tcp/http__10.244.1.2/8080"
DNS_SET = "affinity-2CXU44YB-default/dns/udp/__10.244.0.3/5353"


def test_the_table_is_kube_proxys():
    assert (nft.FAMILY, nft.TABLE) == ("ip", "kube-proxy")
    assert nft.render_full(PLAN).startswith(f'add table {T} {{ comment "rules for kube-proxy" ; }}')


def test_full_payload_keeps_affinity_state_and_never_deletes_the_table():
    payload = nft.render_full(PLAN)
    assert "delete table" not in payload
    assert f"flush set {T} {DNS_SET}" not in payload
    assert f"add set {T} {DNS_SET} " in payload
    assert f"flush map {T} service-ips" in payload  # the service maps are refilled


def test_cluster_ips_are_listed_and_checked():
    payload = nft.render_full(dataclasses.replace(PLAN, service_cidr=IPv4Network("10.96.0.0/12")))
    for vip in ("10.96.0.1", "10.96.0.2", "10.96.0.3"):
        assert f"add element {T} cluster-ips {{ {vip} }}" in payload
    assert f"add rule {T} cluster-ips-check ip daddr @cluster-ips reject" in payload
    assert f"add rule {T} cluster-ips-check ip daddr {{ 10.96.0.0/12 }} drop" in payload


def test_node_ports_answer_on_the_primary_addresses_only():
    plan = dataclasses.replace(PLAN, node_ips=(IPv4Address("192.168.0.2"),))
    payload = nft.render_full(plan)
    assert f"add element {T} nodeport-ips {{ 192.168.0.2 }}" in payload
    assert "fib daddr type local" not in payload


def test_stale_chains_are_flushed_now_and_deleted_at_the_next_sync():
    first = nft.render_full(PLAN, existing=["service-OLD-x", "service-GONE-y"])
    assert f"flush chain {T} service-OLD-x" in first
    assert "delete chain" not in first
    stale = nft.stale_chains(PLAN, ["service-OLD-x", "service-GONE-y"])
    second = nft.render_full(PLAN, existing=["service-OLD-x"], stale_since_last=stale)
    assert f"delete chain {T} service-OLD-x" in second
    assert "service-GONE-y" not in second  # already gone: deleting it would fail the transaction


def test_the_fixed_chains_are_never_stale():
    listed = ["service-endpoints-check", "firewall-check", "services", "service-OLD-x"]
    assert nft.stale_chains(PLAN, listed) == {"service-OLD-x"}


def test_partial_payload_rewrites_only_the_changed_service_and_defers_deletion():
    payload = nft.render_partial(PLAN, CHANGED)
    assert "dns" not in payload
    assert f"flush chain {T} {WEB_EP2}" in payload
    assert "delete chain" not in payload
    assert nft.partial_stale_chains(PLAN, CHANGED) == {WEB_EP2}
    later = nft.render_partial(CHANGED, CHANGED, stale_since_last={WEB_EP2})
    assert later.strip() == f"delete chain {T} {WEB_EP2}"


def test_partial_payload_of_a_service_losing_all_endpoints_moves_it_to_the_reject_map():
    gone = dataclasses.replace(PLAN, services=(dataclasses.replace(WEB, endpoints=()), DNS, EMPTY))
    payload = nft.render_partial(PLAN, gone)
    assert f"delete element {T} service-ips {{ 10.96.0.1 . tcp . 80 }}" in payload
    assert (
        f"add element {T} no-endpoint-services {{ 10.96.0.1 . tcp . 80 comment "
        '"default/web:http" : goto reject-chain }' in payload
    )
    assert len(nft.partial_stale_chains(PLAN, gone)) == 4


def test_removed_service_with_affinity_loses_its_sets_after_its_chains():
    lines = nft.render_partial(PLAN, dataclasses.replace(PLAN, services=(WEB, EMPTY))).splitlines()
    assert lines[-1] == f"delete set {T} {DNS_SET}"
    assert lines[0] == f"delete element {T} cluster-ips {{ 10.96.0.2 }}"


def test_no_change_no_payload():
    assert nft.render_partial(PLAN, PLAN).strip() == ""


def test_chain_names_match_kube_proxy():
    assert nft.service_chain(KUBE_SVC1) == "service-ULMVA6XW-ns1/svc1/tcp/p80"
    assert (
        nft.endpoint_chain(KUBE_SVC1, KUBE_EP1)
        == "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
    )


def test_rule_and_element_counts():
    # cluster-ips x3, service-ips x2, a node port, the reject element
    assert nft.element_count(PLAN) == 7
    assert nft.rule_count(PLAN) == len(nft._base_rules(PLAN)) + 14
