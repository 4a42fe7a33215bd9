"""The cluster DNS in pods: what the topology gains, and the scripts that feed dnsmasq."""

from __future__ import annotations

from ipaddress import IPv4Address

from labkit.dataplane import kube_dns
from labkit.dataplane.dns_records import Record
from labkit.topology.loader import parse_topology

TOPOLOGY = """
name: t
nodes: {node-1: {}, node-2: {}, node-3: {}, outside: {roles: [external]}}
pods: {web-1: {node: node-1, labels: {app: web}}}
services: {web: {selector: {app: web}, ports: [{port: 80}]}}
"""


def test_kube_dns_pods_and_service_are_added_spread_over_the_cluster_nodes():
    topology = kube_dns.with_cluster_dns(parse_topology(TOPOLOGY))
    pods = {name: topology.pods[name] for name in kube_dns.pod_names()}
    assert [p.node for p in pods.values()] == ["node-1", "node-2"]
    assert all(
        p.namespace == "kube-system" and p.labels == {"k8s-app": "kube-dns"} for p in pods.values()
    )
    assert list(topology.pods)[:1] == ["web-1"]  # user pods first: their IPs do not move
    service = topology.services["kube-dns"]
    assert service.namespace == "kube-system" and service.pinned_vip == IPv4Address("10.96.0.10")
    assert [(p.name, p.protocol, p.port) for p in service.ports] == [
        ("dns", "UDP", 53),
        ("dns-tcp", "TCP", 53),
    ]
    assert kube_dns.with_cluster_dns(topology) is topology  # once only


def test_no_dns_pods_without_services_or_when_switched_off():
    bare = parse_topology("name: t\nnodes: {node-1: {}}\n")
    assert kube_dns.with_cluster_dns(bare) is bare
    off = parse_topology(TOPOLOGY.replace("name: t", "name: t\ncluster: {dns: false}"))
    assert "kube-dns" not in kube_dns.with_cluster_dns(off).services


def test_records_update_hups_for_a_records_and_restarts_for_srv_or_cname():
    records = [Record("web.default.svc.cluster.local", "A", "10.96.0.2")]
    script = "\n".join(kube_dns.records_update_lines(records))
    assert "10.96.0.2 web.default.svc.cluster.local" in script
    assert "cmp -s" in script and "sig=HUP" in script and "sig=TERM" in script
    # The first time: every record is there before the config that starts the DNS pods.
    assert script.index(kube_dns.RECORDS_PATH) < script.index(f"mv {kube_dns.CONF_PATH}.new")
    assert "then mv" in script.split("sig=;")[0] and '[ -z "$sig" ] ||' in script
    conf = kube_dns.dnsmasq_conf()
    assert f"addn-hosts={kube_dns.HOSTS_PATH}" in conf and "local=/cluster.local/" in conf
    assert "listen-address" not in conf  # every address of the pod
