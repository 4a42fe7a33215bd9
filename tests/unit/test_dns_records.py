"""The cluster DNS records planner and its dnsmasq rendering."""

from __future__ import annotations

from ipaddress import IPv4Address

from labkit.dataplane.dns_records import (
    Record,
    hosts_file,
    needs_restart,
    records_conf,
    service_records,
)
from labkit.topology import parse_topology
from labkit.topology.services_alloc import allocate_vips, service_endpoints

TOPOLOGY = """\
name: t
nodes: {node-1: {}}
pods:
  web-0: {node: node-1, labels: {app: web}, ports: [{name: http, port: 8080}]}
  web-1: {node: node-1, labels: {app: web}, ports: [{name: http, port: 8080}]}
services:
  front: {selector: {app: web}, ports: [{name: http, port: 80, target_port: http}]}
  web: {vip: None, selector: {app: web}, ports: [{name: http, port: 80, target_port: http}]}
  ext: {type: ExternalName, external_name: db.example.org.}
"""
IPS = {"web-0": IPv4Address("10.244.0.2"), "web-1": IPv4Address("10.244.0.3")}
FRONT = "front.default.svc.cluster.local"
WEB = "web.default.svc.cluster.local"


def _records(ready: set[str]) -> list[Record]:
    t = parse_topology(TOPOLOGY)
    found = {n: service_endpoints(s, t.pods, IPS, ready) for n, s in t.services.items()}
    return service_records(t, allocate_vips(t), found)


def test_records_for_cluster_ip_headless_statefulset_names_srv_and_cname():
    records = _records({"web-0", "web-1"})
    assert Record(FRONT, "A", "10.96.0.1") in records
    assert Record(f"_http._tcp.{FRONT}", "SRV", FRONT, 80, 100) in records
    assert {r.target for r in records if r.name == WEB and r.kind == "A"} == {
        "10.244.0.2", "10.244.0.3",
    }  # fmt: skip
    assert Record(f"web-0.{WEB}", "A", "10.244.0.2") in records
    assert Record(f"_http._tcp.{WEB}", "SRV", f"web-1.{WEB}", 8080, 50) in records
    assert Record("ext.default.svc.cluster.local", "CNAME", "db.example.org") in records


def test_only_ready_pods_are_in_a_headless_answer():
    records = _records({"web-1"})
    assert [r.target for r in records if r.name == WEB] == ["10.244.0.3"]


def test_dnsmasq_rendering_and_what_needs_a_restart():
    records = _records({"web-0", "web-1"})
    assert f"10.244.0.2 web-0.{WEB}\n" in hosts_file(records)
    conf = records_conf(records)
    assert f"srv-host=_http._tcp.{WEB},web-0.{WEB},8080,0,50" in conf
    assert "cname=ext.default.svc.cluster.local,db.example.org" in conf
    assert not needs_restart(records, records)
    assert needs_restart(records, _records({"web-1"}))  # an SRV target went
