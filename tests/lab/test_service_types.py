"""The Service model real clusters have: LoadBalancer (MetalLB L2 and BGP), traffic
policies, external IPs, session affinity timeouts, 127.0.0.1 node ports, UDP
conntrack cleanup. One lab per topology: service-types.yaml (iptables mode, L2)
and service-types-bgp.yaml (nftables mode, BGP to a router node).

Tests that stop a node run last in each lab and start it again.
"""

from __future__ import annotations

import json
import time

import pytest

from labkit import Lab, expect
from labkit.dataplane.lb_announce import l2_owner
from labkit.dataplane.lb_bgp import next_hops, routes_command
from labkit.load import ContinuousClient
from labkit.runtime import features

l2 = pytest.mark.topology("service-types")
bgp = pytest.mark.topology("service-types-bgp")
CLUSTER_NODES = ("node-1", "node-2", "node-3")

# UDP from one fixed source port: the flow conntrack keeps between datagrams.
_UDP_FROM_PORT = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[3]))); s.settimeout(1.0)
s.sendto(b"ping", (sys.argv[1], int(sys.argv[2])))
try:
    print(s.recv(512).decode().split()[0])
except OSError:
    print("no-reply")
"""


def udp_from(source, target: object, port: int, from_port: int) -> str:
    return source.exec(f"python3 -c '{_UDP_FROM_PORT}' {target} {port} {from_port}").stdout.strip()


def node_addresses(lab: Lab, node: str) -> set[str]:
    subnet = lab.addresses.pod_subnets[node]
    return {str(lab.node(node).ip), str(subnet.network_address), str(subnet.network_address + 1)}


# -- LoadBalancer, L2 ---------------------------------------------------------------------


@l2
def test_each_load_balancer_gets_a_pool_address_shown_in_status(lab):
    addresses = {name: lab.service(name).lb_ip for name in ("lb-web", "lb-local", "lb-takeover")}
    assert str(addresses["lb-takeover"]) == "10.77.7.242"  # pinned
    assert all(str(ip).startswith("10.77.7.24") for ip in addresses.values())
    assert len(set(addresses.values())) == len(addresses)
    status = lab.describe()
    shown = {s["name"]: s["load_balancer_ip"] for s in status["services"]}
    assert shown["lb-web"] == str(addresses["lb-web"])
    assert status["load_balancer"]["mode"] == "l2"


def announced(lab: Lab, ip: object) -> dict:
    """The status entry of one LoadBalancer address."""
    found = [a for a in lab.describe()["load_balancer"]["addresses"] if a["ip"] == str(ip)]
    assert found, ip
    return found[0]


def held_by(lab: Lab, ip: object, nodes: list[str]) -> dict:
    entry = announced(lab, ip)
    assert entry["announced_by"] == nodes, entry
    return entry


def mac_of(lab: Lab, node: str) -> str:
    return lab.node(node).exec("cat /sys/class/net/eth0/address").stdout.strip()


@l2
def test_one_elected_node_answers_arp_for_each_address(lab):
    outside = lab.node("outside")
    for entry in lab.describe()["load_balancer"]["addresses"]:
        ip, owner = entry["ip"], entry["elected"]
        assert owner == l2_owner(entry["candidates"], ip)  # MetalLB's election
        # The speakers agree with it: exactly that node holds the address.
        expect.eventually(lambda i=ip, o=owner: held_by(lab, i, [o]), within=5, what=ip)
        assert outside.http(ip, 80).ok, ip
        assert mac_of(lab, owner) in outside.exec(f"ip neigh show {ip}").stdout, ip


@l2
def test_external_client_reaches_lb_address_masqueraded_with_cluster_policy(lab):
    outside = lab.node("outside")
    answer = outside.http(lab.service("lb-web").lb_ip, 80)
    assert answer.ok and answer.pod.startswith("web-"), answer
    assert answer.client_ip != str(outside.ip)


@l2
def test_load_balancer_source_ranges_let_only_those_sources_in(lab):
    ip = lab.service("lb-ranges").lb_ip
    assert lab.node("outside").http(ip, 80).ok  # 10.77.7.5/32 is in the ranges
    assert not lab.pod("client-1").http(ip, 80, timeout=1).ok  # a pod is not
    rules = lab.node("node-1").exec("iptables-save -t nat").stdout
    assert "-A KUBE-FW-" in rules and "-s 10.77.7.5/32" in rules


# -- externalTrafficPolicy Local -------------------------------------------------------------


@l2
def test_local_policy_keeps_the_client_source_and_answers_only_where_endpoints_are(lab):
    outside, local, cluster = (
        lab.node("outside"),
        lab.service("lb-local"),
        lab.service("np-cluster"),
    )
    answer = outside.http(local.lb_ip, 80)
    assert answer.ok and answer.pod == "local-2" and answer.client_ip == str(outside.ip), answer
    port = local.node_port("http")
    assert outside.http(lab.node("node-2"), port).client_ip == str(outside.ip)
    for node in ("node-1", "node-3"):  # no local endpoint: no answer (dropped)
        assert not outside.http(lab.node(node), port, timeout=1).ok, node
    # The same pod behind Cluster policy, reached through node-1: masqueraded.
    seen = outside.http(lab.node("node-1"), cluster.node_port("http"))
    assert seen.ok and seen.client_ip in node_addresses(lab, "node-1"), seen


@l2
def test_health_check_node_port_answers_200_or_503_with_the_local_endpoint_count(lab):
    outside, port = lab.node("outside"), lab.service("lb-local").health_check_node_port
    for node, status, count in (("node-1", 503, 0), ("node-2", 200, 1), ("node-3", 503, 0)):
        answer = outside.http(lab.node(node), port)
        assert answer.status == status, (node, answer)
        body = json.loads(answer.body)
        assert body["localEndpoints"] == count and body["service"]["name"] == "lb-local"


@l2
def test_local_policy_lb_address_is_announced_by_a_node_with_an_endpoint(lab):
    found = {a["service"]: a for a in lab.describe()["load_balancer"]["addresses"]}
    assert found["lb-local"]["candidates"] == ["node-2"]


# -- internalTrafficPolicy, external IPs, affinity --------------------------------------------


@l2
def test_internal_local_policy_uses_only_the_callers_node(lab):
    vip = lab.service("itp-local").vip
    assert not lab.pod("client-1").http(vip, 80, timeout=1).ok  # node-1 has no endpoint
    for _ in range(3):
        assert lab.pod("client-2").http(vip, 80).pod == "local-2"


@l2
def test_external_ip_reaches_the_service_from_a_pod_and_from_outside(lab):
    answer = lab.pod("client-1").http("10.79.0.10", 80)
    assert answer.ok and answer.pod.startswith("web-"), answer
    outside = lab.node("outside")
    outside.exec(f"ip route replace 10.79.0.10/32 via {lab.node('node-3').ip}")
    try:
        assert outside.http("10.79.0.10", 80).ok
    finally:
        outside.exec("ip route del 10.79.0.10/32", check=False)


@l2
def test_client_ip_affinity_holds_then_expires_after_its_timeout(lab):
    client, vip = lab.pod("client-1"), lab.service("sticky").vip
    first = client.http(vip, 80).pod
    assert all(client.http(vip, 80).pod == first for _ in range(8))  # sticky within 2 s
    for _ in range(10):  # after 2 s idle the pick is random again: soon another pod
        time.sleep(2.3)
        now = client.http(vip, 80).pod
        if now != first:
            return
        first = now
    pytest.fail("affinity never expired: every pick after the timeout was the same pod")


@l2
def test_terminating_endpoints_serve_only_when_no_endpoint_is_ready(lab):
    client, vip = lab.pod("client-1"), lab.service("ext-ip").vip
    try:
        lab.services.set_terminating(["web-1", "web-2"])
        states = {e.pod: e.terminating for e in lab.service("ext-ip").endpoints()}
        assert states == {"web-1": True, "web-2": True, "web-3": False}
        assert {client.http(vip, 80).pod for _ in range(10)} == {"web-3"}
        lab.services.set_terminating(["web-3"])  # none ready: kube-proxy falls back
        seen = {client.http(vip, 80).pod for _ in range(15)}
        assert len(seen) >= 2 and seen <= {"web-1", "web-2", "web-3"}, seen
    finally:
        lab.services.set_terminating(["web-1", "web-2", "web-3"], terminating=False)
    assert len({client.http(vip, 80).pod for _ in range(15)}) >= 2


@l2
def test_sctp_service_where_the_kernel_has_sctp(lab):
    if not features.has("sctp"):
        pytest.skip(features.missing_reason("sctp"))
    handle = lab.services.add(
        "sctp-web",
        {
            "selector": {"app": "web"},
            "ports": [{"port": 7000, "protocol": "SCTP", "target_port": 7000}],
        },
    )
    try:
        rules = lab.node("node-1").exec("iptables-save -t nat").stdout
        assert f"-d {handle.vip}/32 -p sctp" in rules
    finally:
        lab.services.delete("sctp-web")


# -- 127.0.0.1 node ports (iptables: kube-proxy's default on) --------------------------------


@l2
def test_localhost_node_port_answers_with_route_localnet_and_the_martian_drop(lab):
    node, port = lab.node("node-1"), lab.service("lb-web").node_port("http")
    assert node.exec("sysctl -n net.ipv4.conf.all.route_localnet").stdout.strip() == "1"
    assert node.http("127.0.0.1", port).ok
    assert "block incoming localnet connections" in node.exec("iptables-save -t filter").stdout


# -- UDP conntrack cleanup -------------------------------------------------------------------


@l2
def test_udp_client_keeps_working_from_0_to_n_endpoints_and_across_a_change(lab):
    client, service = lab.pod("client-1"), lab.service("udp-echo")
    node_port = service.node_port("udp")
    outside, node = lab.node("outside"), lab.node("node-3")
    assert udp_from(client, service.vip, 9000, 41000) == "no-reply"  # no endpoint yet
    assert udp_from(outside, node.ip, node_port, 41001) == "no-reply"
    lab.add_pod("udp-a", {"node": "node-2", "labels": {"app": "udp"}, "run": ["echo-server"]})
    try:
        # 0 -> N: the entries of before (to the VIP and the node port) were removed.
        assert udp_from(client, service.vip, 9000, 41000) == "udp-a"
        assert udp_from(outside, node.ip, node_port, 41001) == "udp-a"
        lab.add_pod("udp-b", {"node": "node-3", "labels": {"app": "udp"}, "run": ["echo-server"]})
        lab.delete_pod("udp-a")
        # The flows to the gone endpoint were removed: the same clients reach udp-b.
        assert udp_from(client, service.vip, 9000, 41000) == "udp-b"
        assert udp_from(outside, node.ip, node_port, 41001) == "udp-b"
    finally:
        for pod in ("udp-a", "udp-b"):
            if pod in lab.topology.pods:
                lab.delete_pod(pod)


# -- L2 takeover (stops a node: last) ---------------------------------------------------------


@l2
def test_l2_takeover_when_the_announcing_node_stops(lab):
    ip, outside = lab.service("lb-takeover").lb_ip, lab.node("outside")
    owner = l2_owner(CLUSTER_NODES, ip)
    assert owner == "node-2"
    load = ContinuousClient(outside, ip, 80, path="/hostname", timeout=0.3, duration=30).start()
    load.wait_successes(5)
    stopped_at = time.time()
    lab.faults.stop_node(owner)
    try:
        load.wait_successes(10, within=15)
        result = load.stop()
        after = result.after(stopped_at)
        assert after.failed < after.sent and result.recovered, result.summary()
        assert result.outage_s < 5, result.summary()
        held_by(lab, ip, ["node-1"])  # the runner-up of the election
        # Told by gratuitous ARP (the outside node did not have to ask).
        assert mac_of(lab, "node-1") in outside.exec(f"ip neigh show {ip}").stdout
    finally:
        lab.faults.start_node(owner)


# -- LoadBalancer, BGP ------------------------------------------------------------------------


@bgp
def test_bgp_router_reaches_the_lb_address_over_every_announcing_node(lab):
    router, ip = lab.node("router"), lab.service("lb-web").lb_ip
    nodes = {lab.node(n).ip for n in CLUSTER_NODES}
    expect.eventually(
        lambda: next_hops(router.exec(routes_command(ip)).stdout) == nodes or _fail(router, ip),
        within=15,
        what="an ECMP route over the three nodes",
    )
    answers = {router.http(ip, 80, path="/hostname").body.strip() for _ in range(12)}
    assert answers and all(a.startswith("web-") for a in answers), answers
    assert lab.describe()["load_balancer"]["mode"] == "bgp"


def _fail(router, ip) -> bool:
    raise AssertionError(router.exec(routes_command(ip)).stdout)


@bgp
def test_bgp_local_policy_is_announced_only_where_an_endpoint_is(lab):
    router, ip = lab.node("router"), lab.service("lb-local").lb_ip
    expect.eventually(
        lambda: (
            next_hops(router.exec(routes_command(ip)).stdout) == {lab.node("node-2").ip}
            or _fail(router, ip)
        ),
        within=15,
        what="a route over node-2 only",
    )
    answer = router.http(ip, 80)
    assert answer.pod == "local-2" and answer.client_ip == str(router.ip), answer


@bgp
def test_nftables_localhost_node_ports_are_off(lab):
    node, port = lab.node("node-1"), lab.service("web-np").node_port("http")
    assert not node.http("127.0.0.1", port, timeout=1).ok
    assert node.http(node.ip, port).ok


@bgp
def test_nftables_affinity_entry_expires_after_its_timeout(lab):
    client, vip, node = lab.pod("client-1"), lab.service("sticky").vip, lab.node("node-1")
    first = client.http(vip, 80).pod
    assert all(client.http(vip, 80).pod == first for _ in range(5))
    table = node.exec("nft list table ip kube-proxy").stdout
    assert "timeout 2s" in table and str(client.ip) in table
    time.sleep(2.5)
    assert str(client.ip) not in node.exec("nft list table ip kube-proxy").stdout


@bgp
def test_bgp_takeover_when_an_announcing_node_stops(lab):
    router, ip = lab.node("router"), lab.service("lb-takeover").lb_ip
    expect.eventually(
        lambda: len(next_hops(router.exec(routes_command(ip)).stdout)) == 3 or _fail(router, ip),
        within=15,
        what="three paths",
    )
    load = ContinuousClient(router, ip, 80, path="/hostname", timeout=0.3, duration=30).start()
    load.wait_successes(5)
    lab.faults.stop_node("node-1")
    try:
        expect.eventually(
            lambda: (
                lab.node("node-1").ip not in next_hops(router.exec(routes_command(ip)).stdout)
                or _fail(router, ip)
            ),
            within=10,
            what="node-1's path withdrawn (hold time)",
        )
        load.wait_successes(10)
        result = load.stop()
        assert result.recovered and result.outage_s < 6, result.summary()
    finally:
        lab.faults.start_node("node-1")
