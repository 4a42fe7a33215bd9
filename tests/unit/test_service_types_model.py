"""LoadBalancer, traffic policies, external IPs, headless and ExternalName: the model,
its checks (located errors), the allocations and the plan built from it."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from topology_problems import problems

from labkit.dataplane import kubeproxy_iptables as ipt
from labkit.dataplane.kubeproxy import build_plan, plan_from_json, plan_to_json
from labkit.errors import LabkitError
from labkit.topology import parse_topology
from labkit.topology.lb_pool import allocate_lb_ips, parse_block
from labkit.topology.services_alloc import (
    allocate_node_ports,
    allocate_vips,
    health_check_key,
    service_endpoints,
)

BASE = """\
name: t
nodes: {node-1: {}, node-2: {}}
pods:
  a: {node: node-1, labels: {app: web}, ports: [{name: http, port: 8080}]}
  b: {node: node-2, labels: {app: web}, ports: [{name: http, port: 8080}]}
"""
POOL = "cluster: {load_balancer: {addresses: [192.168.50.240/30, 192.168.50.250-192.168.50.251]}}\n"
IPS = {"a": IPv4Address("10.244.0.2"), "b": IPv4Address("10.244.1.2")}


def test_pool_blocks_cidr_and_range():
    assert [str(a) for a in parse_block("192.168.50.240/30")] == [
        "192.168.50.241",
        "192.168.50.242",
    ]
    assert len(parse_block("10.0.0.1-10.0.0.3")) == 3
    with pytest.raises(ValueError, match="ends before it starts"):
        parse_block("10.0.0.3-10.0.0.1")


def test_lb_addresses_pinned_kept_then_lowest_free():
    t = parse_topology(
        BASE + POOL + "services:\n"
        "  a: {type: LoadBalancer, selector: {app: web}, ports: [{port: 80}]}\n"
        "  b: {type: LoadBalancer, selector: {app: web}, ports: [{port: 80}],"
        " load_balancer_ip: 192.168.50.241}\n"
        "  c: {type: LoadBalancer, selector: {app: web}, ports: [{port: 80}]}\n"
    )
    kept = {"c": IPv4Address("192.168.50.250")}
    assert {k: str(v) for k, v in allocate_lb_ips(t, kept).items()} == {
        "a": "192.168.50.242", "b": "192.168.50.241", "c": "192.168.50.250",
    }  # fmt: skip


def test_a_full_pool_is_an_error():
    services = "".join(
        f"  s{i}: {{type: LoadBalancer, selector: {{app: web}}, ports: [{{port: 80}}]}}\n"
        for i in range(5)
    )
    t = parse_topology(BASE + POOL + "services:\n" + services)
    with pytest.raises(LabkitError, match=r"pool .* is full"):
        allocate_lb_ips(t)


def test_located_errors_for_bad_values():
    found = problems(
        BASE + "cluster: {load_balancer: {addresses: [nonsense], mode: bgp}}\n"
        "services:\n"
        "  lb: {type: LoadBalancer, selector: {app: web}, ports: [{port: 80}],"
        " load_balancer_ip: 10.9.9.9}\n"
        "  hl: {vip: None, type: NodePort, selector: {app: web}, ports: [{port: 80}]}\n"
        "  en: {type: ExternalName}\n"
        "  etp: {external_traffic_policy: Local, selector: {app: web}, ports: [{port: 80}]}\n"
        "  ext: {selector: {app: web}, ports: [{port: 80}], external_ips: [10.96.5.5],"
        " load_balancer_source_ranges: [10.0.0.0/8]}\n"
    )
    assert any("cluster.load_balancer.addresses.0: 'nonsense' is neither" in p for p in found)
    assert any("cluster.load_balancer.mode: mode bgp needs a peer" in p for p in found)
    assert any(
        "services.hl.vip: a headless service (vip: None) cannot be NodePort" in p for p in found
    )
    assert any(
        "services.en.type: an ExternalName service needs `external_name`" in p for p in found
    )
    assert any(
        "services.etp.external_traffic_policy: Local needs external traffic" in p for p in found
    )
    assert any(
        "services.ext.external_ips.0: 10.96.5.5 is inside the service CIDR" in p for p in found
    )
    assert any(
        "services.ext.load_balancer_source_ranges: `load_balancer_source_ranges` needs" in p
        for p in found
    )
    assert all(p.startswith("t.yaml:") for p in found)


def test_pinned_lb_address_outside_the_pool():
    found = problems(
        BASE + POOL + "services:\n  lb: {type: LoadBalancer, selector: {app: web},"
        " ports: [{port: 80}], load_balancer_ip: 10.9.9.9}\n"
    )
    assert found == [
        "t.yaml:8:89: services.lb.load_balancer_ip: 10.9.9.9 is outside the load balancer pool"
    ]


def test_load_balancer_without_a_pool():
    found = problems(
        BASE + "services:\n  lb: {type: LoadBalancer, selector: {app: web}, ports: [{port: 80}]}\n"
    )
    assert found == [
        "t.yaml:7:14: services.lb.type: LoadBalancer needs an address pool: cluster.load_balancer"
    ]


def test_kubernetes_spellings_and_sctp_are_accepted():
    t = parse_topology(
        BASE + "services:\n"
        "  hl: {cluster_ip: None, selector: {app: web}, ports: [{port: 80}]}\n"
        "  en: {type: ExternalName, external_name: example.org}\n"
        "  s: {selector: {app: web}, session_affinity: ClientIP, timeout_seconds: 30,"
        " ports: [{port: 9, protocol: SCTP}]}\n"
    )
    assert t.services["hl"].headless and not t.services["en"].has_cluster_ip
    assert t.services["s"].affinity_timeout == 30
    assert set(allocate_vips(t)) == {"s"}  # headless and ExternalName have no ClusterIP


def _lb_local() -> tuple:
    t = parse_topology(
        BASE + POOL + "services:\n"
        "  lb:\n    type: LoadBalancer\n    selector: {app: web}\n    ports: [{port: 80, target_port: http}]\n"
        "    external_traffic_policy: Local\n    external_ips: [192.168.99.9]\n"
        "    load_balancer_source_ranges: [203.0.113.0/25]\n"
    )
    found = {n: service_endpoints(s, t.pods, IPS, {"a", "b"}) for n, s in t.services.items()}
    return t, allocate_vips(t), allocate_node_ports(t), found, allocate_lb_ips(t)


def test_health_check_node_port_is_allocated_beside_the_node_port():
    _, _, ports, _, _ = _lb_local()
    assert ports == {"lb/80": 30000, health_check_key("lb"): 30001}


def test_plan_per_node_carries_the_features_and_round_trips():
    t, vips, ports, found, lbs = _lb_local()
    plan = build_plan(t, vips, ports, found, lb_ips=lbs, node="node-1")
    (lb,) = plan.services
    assert lb.lb_ips == (IPv4Address("192.168.50.241"),) and lb.external_local
    assert lb.health_check_node_port == 30001 and lb.node_port == 30000
    assert plan_from_json(plan_to_json(plan)) == plan


def test_etp_local_answers_only_where_an_endpoint_is_local():
    t, vips, ports, found, lbs = _lb_local()
    found = {"lb": [e for e in found["lb"] if e.node == "node-2"]}
    here = ipt.render_full(build_plan(t, vips, ports, found, lb_ips=lbs, node="node-1"))
    there = ipt.render_full(build_plan(t, vips, ports, found, lb_ips=lbs, node="node-2"))
    assert '"default/lb has no local endpoints" -m addrtype --dst-type LOCAL' in here
    assert "KUBE-SVL-" not in here and "KUBE-SVL-" in there
    assert "has no local endpoints" not in there
    assert "-j KUBE-FW-" in there and "-s 203.0.113.0/25" in there


def test_terminating_endpoints_serve_only_when_nothing_is_ready():
    t, vips, ports, _, lbs = _lb_local()
    both = {"lb": service_endpoints(t.services["lb"], t.pods, IPS, {"a"}, terminating={"b"})}
    plan = build_plan(t, vips, ports, both, lb_ips=lbs, node="node-2")
    assert [e.terminating for e in plan.services[0].endpoints] == [False, True]
    payload = ipt.render_full(plan)
    # node-2's only local endpoint is terminating: Local traffic falls back to it.
    assert "10.244.1.2:8080" in payload
    only = {"lb": service_endpoints(t.services["lb"], t.pods, IPS, {"a"})}
    assert "10.244.1.2" not in ipt.render_full(build_plan(t, vips, ports, only, node="node-2"))


def test_localhost_node_ports_off_is_consistent():
    t = parse_topology(
        BASE + "cluster: {localhost_node_ports: false}\nservices:\n"
        "  np: {type: NodePort, selector: {app: web}, ports: [{port: 80}]}\n"
    )
    found = {n: service_endpoints(s, t.pods, IPS, {"a"}) for n, s in t.services.items()}
    plan = build_plan(t, allocate_vips(t), allocate_node_ports(t), found)
    payload = ipt.render_full(plan)
    assert "! -d 127.0.0.0/8 -m comment" in payload
    assert "block incoming localnet connections" not in payload
    assert ipt.node_sysctls(plan) == {"net.ipv4.conf.all.route_localnet": "0"}
