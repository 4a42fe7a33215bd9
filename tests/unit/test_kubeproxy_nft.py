"""kube-proxy's nftables mode, rendered: small cases against the expected text."""

from __future__ import annotations

import dataclasses

from kubeproxy_cases import CHANGED, DNS, EMPTY, KUBE_EP1, KUBE_SVC1, PLAN, WEB

from labkit.dataplane import kubeproxy_nft as nft

# Written with spaces; the payload indents with tabs.
FULL = """\
add table ip labkit-proxy
delete table ip labkit-proxy
table ip labkit-proxy {
    comment "rules for labkit's service proxy (kube-proxy nftables layout)"
    map service-ips { type ipv4_addr . inet_proto . inet_service : verdict; comment "ClusterIP traffic"; }
    map service-nodeports { type inet_proto . inet_service : verdict; comment "NodePort traffic"; }
    map no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict; comment "reject packets to services with no endpoints"; }
    map no-endpoint-nodeports { type inet_proto . inet_service : verdict; comment "reject packets to node ports of services with no endpoints"; }
    chain nat-prerouting { type nat hook prerouting priority dstnat; policy accept; jump services; }
    chain nat-output { type nat hook output priority -100; policy accept; jump services; }
    chain nat-postrouting { type nat hook postrouting priority srcnat; policy accept; jump masquerading; }
    chain filter-input { type filter hook input priority -110; policy accept; ct state new jump nodeport-endpoints-check; ct state new jump service-endpoints-check; }
    chain filter-forward { type filter hook forward priority -110; policy accept; ct state new jump service-endpoints-check; }
    chain filter-output { type filter hook output priority -110; policy accept; ct state new jump service-endpoints-check; }
    chain mark-for-masquerade { meta mark set meta mark or 0x4000; }
    chain masquerading { meta mark and 0x4000 == 0 return; meta mark set meta mark xor 0x4000; masquerade fully-random; }
    chain services { ip daddr . meta l4proto . th dport vmap @service-ips; fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports; }
    chain service-endpoints-check { ip daddr . meta l4proto . th dport vmap @no-endpoint-services; }
    chain nodeport-endpoints-check { fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports; }
    chain reject-chain { reject; }
    set affinity-2CXU44YB-default/dns/udp/__10.244.0.3/5353 { type ipv4_addr; flags dynamic,timeout; timeout 60s; }
    chain service-SUSTUHLJ-default/web/tcp/http {
        ip daddr 10.96.0.1 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
        numgen random mod 2 vmap { 0 : goto endpoint-CFQGW5QF-default/web/tcp/http__10.244.0.2/8080, 1 : goto endpoint-SVLGPL42-default/web/tcp/http__10.244.1.2/8080 }
    }
    chain external-SUSTUHLJ-default/web/tcp/http {
        jump mark-for-masquerade
        goto service-SUSTUHLJ-default/web/tcp/http
    }
    chain endpoint-CFQGW5QF-default/web/tcp/http__10.244.0.2/8080 {
        ip saddr 10.244.0.2 jump mark-for-masquerade
        meta l4proto tcp dnat to 10.244.0.2:8080
    }
    chain endpoint-SVLGPL42-default/web/tcp/http__10.244.1.2/8080 {
        ip saddr 10.244.1.2 jump mark-for-masquerade
        meta l4proto tcp dnat to 10.244.1.2:8080
    }
    chain service-OIWFLQEX-default/dns/udp/ {
        ip daddr 10.96.0.2 udp dport 53 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
        ip saddr @affinity-2CXU44YB-default/dns/udp/__10.244.0.3/5353 goto endpoint-2CXU44YB-default/dns/udp/__10.244.0.3/5353
        numgen random mod 1 vmap { 0 : goto endpoint-2CXU44YB-default/dns/udp/__10.244.0.3/5353 }
    }
    chain endpoint-2CXU44YB-default/dns/udp/__10.244.0.3/5353 {
        ip saddr 10.244.0.3 jump mark-for-masquerade
        update @affinity-2CXU44YB-default/dns/udp/__10.244.0.3/5353 { ip saddr }
        meta l4proto udp dnat to 10.244.0.3:5353
    }
}
add element ip labkit-proxy service-ips { 10.96.0.1 . tcp . 80 comment "default/web:http" : goto service-SUSTUHLJ-default/web/tcp/http }
add element ip labkit-proxy service-nodeports { tcp . 30080 comment "default/web:http" : goto external-SUSTUHLJ-default/web/tcp/http }
add element ip labkit-proxy service-ips { 10.96.0.2 . udp . 53 comment "default/dns" : goto service-OIWFLQEX-default/dns/udp/ }
add element ip labkit-proxy no-endpoint-services { 10.96.0.3 . tcp . 80 comment "default/empty" : goto reject-chain }
"""

PARTIAL = """\
add chain ip labkit-proxy service-SUSTUHLJ-default/web/tcp/http
flush chain ip labkit-proxy service-SUSTUHLJ-default/web/tcp/http
add chain ip labkit-proxy external-SUSTUHLJ-default/web/tcp/http
flush chain ip labkit-proxy external-SUSTUHLJ-default/web/tcp/http
add chain ip labkit-proxy endpoint-CFQGW5QF-default/web/tcp/http__10.244.0.2/8080
flush chain ip labkit-proxy endpoint-CFQGW5QF-default/web/tcp/http__10.244.0.2/8080
add rule ip labkit-proxy service-SUSTUHLJ-default/web/tcp/http ip daddr 10.96.0.1 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
add rule ip labkit-proxy service-SUSTUHLJ-default/web/tcp/http numgen random mod 1 vmap { 0 : goto endpoint-CFQGW5QF-default/web/tcp/http__10.244.0.2/8080 }
add rule ip labkit-proxy external-SUSTUHLJ-default/web/tcp/http jump mark-for-masquerade
add rule ip labkit-proxy external-SUSTUHLJ-default/web/tcp/http goto service-SUSTUHLJ-default/web/tcp/http
add rule ip labkit-proxy endpoint-CFQGW5QF-default/web/tcp/http__10.244.0.2/8080 ip saddr 10.244.0.2 jump mark-for-masquerade
add rule ip labkit-proxy endpoint-CFQGW5QF-default/web/tcp/http__10.244.0.2/8080 meta l4proto tcp dnat to 10.244.0.2:8080
flush chain ip labkit-proxy endpoint-SVLGPL42-default/web/tcp/http__10.244.1.2/8080
delete chain ip labkit-proxy endpoint-SVLGPL42-default/web/tcp/http__10.244.1.2/8080
"""


def tabs(text: str) -> str:
    return text.replace("    ", "\t")


def test_full_payload_replaces_the_table_in_one_transaction():
    assert nft.render_full(PLAN) == tabs(FULL)


def test_partial_payload_rewrites_only_the_changed_service():
    assert nft.render_partial(PLAN, CHANGED) == tabs(PARTIAL)


def test_partial_payload_of_a_service_losing_all_endpoints_moves_it_to_the_reject_map():
    gone = dataclasses.replace(PLAN, services=(dataclasses.replace(WEB, endpoints=()), DNS, EMPTY))
    payload = nft.render_partial(PLAN, gone)
    assert "delete element ip labkit-proxy service-ips { 10.96.0.1 . tcp . 80 }" in payload
    assert (
        "add element ip labkit-proxy no-endpoint-services { 10.96.0.1 . tcp . 80 comment "
        '"default/web:http" : goto reject-chain }' in payload
    )
    lines = payload.splitlines()
    # Every chain of the service goes, each emptied before any is deleted.
    flushes = [i for i, line in enumerate(lines) if line.startswith("flush chain")]
    deletes = [i for i, line in enumerate(lines) if line.startswith("delete chain")]
    assert len(deletes) == 4 and max(flushes) < min(deletes)


def test_removed_service_with_affinity_loses_its_sets_after_its_chains():
    payload = nft.render_partial(PLAN, dataclasses.replace(PLAN, services=(WEB, EMPTY)))
    lines = payload.splitlines()
    assert (
        lines[-1]
        == "delete set ip labkit-proxy affinity-2CXU44YB-default/dns/udp/__10.244.0.3/5353"
    )
    assert lines[0] == "delete element ip labkit-proxy service-ips { 10.96.0.2 . udp . 53 }"


def test_no_change_no_payload():
    assert nft.render_partial(PLAN, PLAN).strip() == ""


def test_chain_names_match_kube_proxy():
    assert nft.service_chain(KUBE_SVC1) == "service-ULMVA6XW-ns1/svc1/tcp/p80"
    assert (
        nft.endpoint_chain(KUBE_SVC1, KUBE_EP1)
        == "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
    )


def test_rule_and_element_counts():
    assert nft.element_count(PLAN) == 4
    assert nft.rule_count(PLAN) == 13 + 2 + 2 + 2 + 2 + 3 + 3
