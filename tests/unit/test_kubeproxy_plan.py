"""Services decided without Docker: allocation, endpoints, the plan, conntrack,
node scripts, readiness parsing, DNS text."""

from __future__ import annotations

from ipaddress import IPv4Address

from labkit.dataplane import dns
from labkit.dataplane.kubeproxy import (
    EndpointPlan,
    build_plan,
    changed_services,
    conntrack_flushes,
    plan_from_json,
    plan_to_json,
)
from labkit.dataplane.proxy_modes import mode_of, parse_sync_output, sync_script
from labkit.dataplane.readiness import parse_readiness
from labkit.topology.loader import parse_topology
from labkit.topology.services_alloc import (
    ServiceEndpoint,
    allocate_node_ports,
    allocate_vips,
    dns_vip,
    service_endpoints,
)

TOPOLOGY = """
name: t
nodes: {node-1: {}, node-2: {}}
pods:
  a: {node: node-1, labels: {app: web}, ports: [{name: http, port: 8080}]}
  b: {node: node-2, labels: {app: web}, ports: [{name: http, port: 8081}]}
  c: {node: node-2, labels: {app: web}}
  other-ns: {node: node-1, namespace: team, labels: {app: web}, ports: [{name: http, port: 8080}]}
services:
  web:
    selector: {app: web}
    ports: [{name: http, port: 80, target_port: http}, {name: raw, port: 81, protocol: UDP}]
  pinned: {selector: {app: web}, vip: 10.96.0.1, ports: [{port: 80}]}
  np: {type: NodePort, selector: {app: web}, ports: [{port: 80, node_port: 30000}]}
  np2: {type: NodePort, selector: {app: web}, ports: [{port: 80}]}
  none: {ports: [{port: 80}]}
"""


def topology():
    return parse_topology(TOPOLOGY)


IPS = {
    "a": IPv4Address("10.244.0.2"),
    "b": IPv4Address("10.244.1.2"),
    "c": IPv4Address("10.244.1.3"),
    "other-ns": IPv4Address("10.244.0.3"),
}


def test_vips_pinned_first_then_lowest_free_skipping_the_dns_address():
    vips = allocate_vips(topology())
    assert vips["pinned"] == IPv4Address("10.96.0.1")
    assert vips["web"] == IPv4Address("10.96.0.2")
    assert dns_vip(topology().cluster) == IPv4Address("10.96.0.10")
    assert IPv4Address("10.96.0.10") not in vips.values()
    assert len(set(vips.values())) == len(vips)


def test_vips_are_sticky():
    t = topology()
    first = allocate_vips(t)
    kept = allocate_vips(t, {"np": IPv4Address("10.96.3.3")})
    assert kept["np"] == IPv4Address("10.96.3.3")
    assert kept["web"] == first["web"]


def test_node_ports_pinned_then_lowest_free_and_sticky():
    t = topology()
    assert allocate_node_ports(t) == {"np/80": 30000, "np2/80": 30001}
    assert allocate_node_ports(t, {"np2/80": 31000}) == {"np/80": 30000, "np2/80": 31000}


def test_endpoints_are_ready_pods_of_the_namespace_with_the_named_port():
    t = topology()
    found = service_endpoints(t.services["web"], t.pods, IPS, ready={"a", "b", "c", "other-ns"})
    assert found == [
        ServiceEndpoint("a", IPS["a"], "node-1", {"http": 8080, "raw": 81}),
        ServiceEndpoint("b", IPS["b"], "node-2", {"http": 8081, "raw": 81}),
        # c declares no `http` port: an endpoint of the other port only.
        ServiceEndpoint("c", IPS["c"], "node-2", {"raw": 81}),
    ]
    assert [e.pod for e in service_endpoints(t.services["web"], t.pods, IPS, ready={"b"})] == ["b"]
    assert service_endpoints(t.services["none"], t.pods, IPS, ready=set(IPS)) == []


def test_plan_has_one_entry_per_service_port():
    t = topology()
    vips, ports = allocate_vips(t), allocate_node_ports(t)
    found = {n: service_endpoints(s, t.pods, IPS, set(IPS)) for n, s in t.services.items()}
    plan = build_plan(t, vips, ports, found)
    names = [(s.name, s.proto) for s in plan.services]
    assert names[:2] == [("default/web:http", "tcp"), ("default/web:raw", "udp")]
    http = plan.services[0]
    assert [e.address for e in http.endpoints] == ["10.244.0.2:8080", "10.244.1.2:8081"]
    assert plan.by_name()[("default/np", "tcp")].node_port == 30000
    assert plan_from_json(plan_to_json(plan)) == plan


def test_conntrack_flush_for_removed_udp_endpoints_and_newly_served_services():
    t = topology()
    vips, ports = allocate_vips(t), allocate_node_ports(t)
    before = build_plan(
        t, vips, ports, {"web": service_endpoints(t.services["web"], t.pods, IPS, {"a", "b"})}
    )
    after = build_plan(
        t, vips, ports, {"web": service_endpoints(t.services["web"], t.pods, IPS, {"a"})}
    )
    assert changed_services(before, after) == {
        ("default/web:http", "tcp"),
        ("default/web:raw", "udp"),
    }
    assert conntrack_flushes(before, after) == [
        f"conntrack -D -p udp --orig-dst {vips['web']} --orig-port-dst 81 "
        "--reply-src 10.244.1.2 >/dev/null 2>&1 || true"
    ]
    empty = build_plan(t, vips, ports, {})
    assert conntrack_flushes(empty, after) == [
        f"conntrack -D -p udp --orig-dst {vips['web']} --orig-port-dst 81 >/dev/null 2>&1 || true"
    ]


def test_sync_script_checks_drift_before_writing_and_reports_the_new_digest():
    mode = mode_of("iptables")
    text = sync_script(mode, payload="*nat\nCOMMIT\n", path="/tmp/r", expected_digest="abc")
    check, write = text.index("!= abc ]"), text.index("iptables-restore --noflush < /tmp/r")
    assert check < write < text.index("-C PREROUTING")
    assert text.rstrip().splitlines()[-1].startswith('echo "LABKIT-DIGEST')
    nft_text = sync_script(mode_of("nftables"), payload=None, path="/tmp/r", expected_digest=None)
    assert "nft -f /tmp/r" in nft_text and "LABKIT-DRIFT" not in nft_text
    assert "iptables-legacy-restore" in sync_script(
        mode_of("iptables", "legacy"), payload=None, path="/p", expected_digest=None
    )


def test_parse_sync_output():
    out = parse_sync_output("LABKIT-DRIFT x\nLABKIT-CHAIN KUBE-SVC-A\nLABKIT-CHAIN KUBE-SEP-B\n")
    assert out.drift and out.chains == ("KUBE-SVC-A", "KUBE-SEP-B")
    assert parse_sync_output("LABKIT-DIGEST 0123\n").digest == "0123"


def test_readiness_needs_the_namespace_and_every_container_alive():
    output = "== a netns\nechoserver up\n== b netns\nechoserver down\n== c gone\n== d netns\n"
    expected = {"a": {"echoserver"}, "b": {"echoserver"}, "c": set(), "d": set(), "e": set()}
    # d has no containers: ready. A killed pod loses its pid files: still not ready.
    assert parse_readiness(output, expected) == {"a", "d"}
    assert parse_readiness("== k netns\n", {"k": {"echo-server"}}) == set()


def test_dns_texts():
    vip = IPv4Address("10.96.0.10")
    assert dns.resolv_conf(vip, "team") == (
        "nameserver 10.96.0.10\n"
        "search team.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
    )


def test_endpoint_plan_address():
    assert EndpointPlan(IPv4Address("10.0.0.1"), 80).address == "10.0.0.1:80"
