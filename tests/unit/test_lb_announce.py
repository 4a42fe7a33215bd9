"""LoadBalancer announcements, decided as MetalLB does (L2 election, BGP configs)."""

from __future__ import annotations

import hashlib
import json
from ipaddress import IPv4Address, IPv4Network

from labkit.dataplane import lb_announce, lb_bgp
from labkit.dataplane.kubeproxy import EndpointPlan, ProxyPlan, ServicePortPlan

IP = IPv4Address("192.168.50.240")


def plans(*, local: bool, endpoints: tuple[EndpointPlan, ...]) -> dict[str, ProxyPlan]:
    port = ServicePortPlan(
        "default", "web", "", "TCP", IPv4Address("10.96.0.10"), 80,
        endpoints=endpoints, lb_ips=(IP,), external_local=local, node_port=30080,
    )  # fmt: skip
    return {n: ProxyPlan(IPv4Network("10.244.0.0/16"), (port,), node=n) for n in ("a", "b", "c")}


ON_B = (EndpointPlan(IPv4Address("10.244.1.2"), 8080, "web-1", node="b"),)


def test_cluster_policy_every_node_may_announce_local_only_nodes_with_an_endpoint():
    everywhere = lb_announce.announcements(plans(local=False, endpoints=ON_B), {"web": IP})
    assert everywhere == [lb_announce.Announcement("web", IP, ("a", "b", "c"))]
    local = lb_announce.announcements(plans(local=True, endpoints=ON_B), {"web": IP})
    assert local[0].candidates == ("b",)
    nothing = lb_announce.announcements(plans(local=False, endpoints=()), {"web": IP})
    assert nothing[0].candidates == ()


def test_l2_owner_is_metallbs_lowest_sha256_of_node_and_ip():
    def digest(node: str) -> bytes:
        return hashlib.sha256(f"{node}#{IP}".encode()).digest()

    nodes = ["node-1", "node-2", "node-3"]
    assert lb_announce.l2_order(nodes, IP) == sorted(nodes, key=digest)
    assert lb_announce.l2_owner(nodes, IP) == min(nodes, key=digest)
    assert lb_announce.l2_owner([], IP) is None


def test_speaker_config_lists_the_peers_but_itself():
    found = [lb_announce.Announcement("web", IP, ("a", "b"))]
    peers = {"a": IPv4Address("10.0.0.2"), "b": IPv4Address("10.0.0.3")}
    config = json.loads(lb_announce.speaker_config("a", peers["a"], peers, found))
    assert config["peers"] == {"b": "10.0.0.3"}
    assert config["addresses"] == {str(IP): ["a", "b"]}


def test_bgp_speaker_announces_its_addresses_and_the_router_merges_paths():
    node = lb_bgp.speaker_config(IPv4Address("10.0.0.2"), IPv4Address("10.0.0.9"), 64500, [IP])
    assert f"route {IP}/32 blackhole;" in node
    assert "neighbor 10.0.0.9 as 64500;" in node and f"local 10.0.0.2 as {lb_bgp.NODE_ASN};" in node
    router = lb_bgp.router_config(
        IPv4Address("10.0.0.9"), 64500, {"node-1": IPv4Address("10.0.0.2")}
    )
    assert "merge paths on;" in router and "neighbor 10.0.0.2 as 64512;" in router
    assert "fib_multipath_hash_policy=1" in lb_bgp.deploy_script(router, router=True)


def test_next_hops_of_a_single_and_a_multipath_route():
    single = "10.78.0.2 via 172.20.2.3 dev eth0 proto bird metric 32"
    multi = (
        "10.78.0.1 proto bird metric 32\n\tnexthop via 172.20.2.2 dev eth0 weight 1\n"
        "\tnexthop via 172.20.2.3 dev eth0 weight 1"
    )
    assert lb_bgp.next_hops(single) == {IPv4Address("172.20.2.3")}
    assert lb_bgp.next_hops(multi) == {IPv4Address("172.20.2.2"), IPv4Address("172.20.2.3")}
