"""kube-proxy's own test cases, as labkit plans: the Services and EndpointSlices of
TestOverallIPTablesRules / TestOverallNFTablesRules (kubernetes/kubernetes
pkg/proxy/{iptables,nftables}/proxier_test.go), and the fake proxier's node.

The expected dumps are in data/kube_proxy_upstream/, each with a note of its origin.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from labkit.dataplane.kubeproxy import EndpointPlan, ProxyPlan, ServicePortPlan

DATA = Path(__file__).parent / "data" / "kube_proxy_upstream"
NODE = "test-node"  # the fake proxier's testNodeName
NODE_IP = IPv4Address("192.168.0.2")  # its testNodeIP


def _ip(text: str) -> IPv4Address:
    return IPv4Address(text)


def _ep(ip: str, node: str = "") -> EndpointPlan:
    return EndpointPlan(_ip(ip), 80, node=node)


def _svc(ns: str, name: str, vip: str, **fields: object) -> ServicePortPlan:
    return ServicePortPlan(ns, name, "p80", "TCP", _ip(vip), 80, **fields)  # type: ignore[arg-type]


# HealthCheckNodePort of svc5 is ignored upstream too: its policy is Cluster.
OVERALL_SERVICES = (
    _svc("ns1", "svc1", "172.30.0.41", endpoints=(_ep("10.180.0.1"),)),
    _svc(
        "ns2", "svc2", "172.30.0.42", node_port=3001, lb_ips=(_ip("1.2.3.4"),),
        external_ips=(_ip("192.168.99.22"),), external_local=True, health_check_node_port=30000,
        endpoints=(_ep("10.180.0.2"),),  # no NodeName: not local
    ),
    _svc("ns3", "svc3", "172.30.0.43", node_port=3003, endpoints=(_ep("10.180.0.3"),)),
    _svc(
        "ns4", "svc4", "172.30.0.44", external_ips=(_ip("192.168.99.33"),),
        endpoints=(_ep("10.180.0.4"), _ep("10.180.0.5", NODE)),
    ),
    _svc(
        "ns5", "svc5", "172.30.0.45", node_port=3002, lb_ips=(_ip("5.6.7.8"),),
        source_ranges=(IPv4Network("203.0.113.0/25"),), affinity_seconds=10800,
        endpoints=(_ep("10.180.0.3"),),
    ),
    _svc("ns6", "svc6", "172.30.0.46"),
)  # fmt: skip

OVERALL = ProxyPlan(
    IPv4Network("10.0.0.0/8"),
    OVERALL_SERVICES,
    node=NODE,
    node_ips=(NODE_IP,),
    service_cidr=IPv4Network("172.30.0.0/16"),
)


def expected(name: str) -> str:
    return (DATA / name).read_text()
