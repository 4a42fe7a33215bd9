"""Every pod-network backend on the same layout (topologies/backend-*.yaml):
two nodes on one underlay, two pods per node. One lab per backend, in turn;
then pods wired by CNI ptp instead of the bridge (topologies/pod-ptp.yaml).

Each backend passes the same contract (same node, across nodes, node to
remote pod, full matrix, the largest unfragmented packet, data intact, the
encapsulation seen on the wire); each then has its own checks.
"""

from __future__ import annotations

import time

import pytest

from labkit import expect
from labkit.dataplane import udp, vxlan
from labkit.runtime import features

HTTP_PORT = 8080
TRANSFER_PORT = 7001


@pytest.fixture(autouse=True)
def _host_can_run(request, lab_pool):
    """Skip, with the probe's reason, a backend this host cannot carry."""
    lab_pool.runtime  # noqa: B018  (skips first when no engine answers)
    for feature in getattr(request.cls, "NEEDS", ()):
        if not features.has(feature):
            pytest.skip(features.missing_reason(feature))


def capture_one(node, interface: str, capture_filter: str, send) -> str:
    """Start tcpdump on `node`, call `send()`, return the first packet it saw."""
    out = f"/tmp/capture-{time.monotonic_ns()}.txt"
    node.exec(
        f"setsid -f sh -c \"timeout 10 tcpdump -l -n -i {interface} -c 1 '{capture_filter}'\" "
        f"> {out} 2>&1 < /dev/null"
    )

    def listening() -> None:
        assert "listening on" in node.exec(f"cat {out}").stdout

    def captured() -> str:
        lines = [line for line in node.exec(f"cat {out}").stdout.splitlines() if " IP " in line]
        assert lines, "no packet captured yet"
        return lines[0]

    expect.eventually(listening, within=5, what="tcpdump listening")
    send()
    return expect.eventually(captured, within=5, what=f"a packet matching {capture_filter!r}")


def tcp_checksum_errors(pod) -> int:
    """The pod's TCP InCsumErrors counter (its own /proc/net/snmp)."""
    lines = [line.split() for line in pod.exec("cat /proc/net/snmp").stdout.splitlines()]
    names, values = [line for line in lines if line[0] == "Tcp:"][:2]
    return int(values[names.index("InCsumErrors")])


class BackendContract:
    """What every backend must do. Subclasses name the topology and the wire."""

    NEEDS: tuple[str, ...] = ()
    WIRE = ""  # a tcpdump filter on the underlay for a cross-node ping

    def test_pod_to_pod_on_the_same_node(self, lab):
        client, web = lab.pod("client-1"), lab.pod("web-1")
        assert client.node.name == web.node.name
        assert client.ping(web).loss == 0
        assert client.http(web, HTTP_PORT).pod == "web-1"

    def test_pod_to_pod_across_nodes_keeps_the_pod_address(self, lab):
        client, web = lab.pod("client-1"), lab.pod("web-2")
        assert client.node.name != web.node.name
        reply = client.http(web, HTTP_PORT)
        assert reply.pod == "web-2", reply
        assert reply.client_ip == str(client.ip)  # no NAT between pods
        assert client.tcp(web, 9000, payload="hi\n").served_by == "web-2"
        assert client.udp(web, 9000).served_by == "web-2"

    def test_node_to_remote_pod(self, lab):
        node, web = lab.node("node-1"), lab.pod("web-2")
        assert node.ping(web).loss == 0
        assert node.http(web, HTTP_PORT).pod == "web-2"

    def test_full_pod_matrix(self, lab):
        expect.reachable(lab.pods(), lab.pods())

    def test_largest_unfragmented_packet_crosses_and_one_byte_more_is_refused(self, lab, measure):
        mtu = measure("pod_mtu", lab.cluster.pod_mtu, "bytes")
        client, web = lab.pod("client-1"), lab.pod("web-2")
        assert f"mtu {mtu} " in client.exec("ip link show eth0").stdout
        largest = mtu - 28  # IPv4 20 + ICMP 8
        fits = client.ping(web, size=largest, dont_fragment=True, count=2)
        assert fits.loss == 0, f"{largest} bytes with DF set did not cross: {fits}"
        too_big = client.ping(web, size=largest + 1, dont_fragment=True, count=1)
        assert not too_big.ok, f"{largest + 1} bytes with DF set crossed: the pod MTU is too small"

    def test_data_crosses_intact(self, lab):
        """4 MB across nodes arrive bit for bit, and no TCP checksum error is counted."""
        sender, receiver = lab.pod("client-1"), lab.pod("web-2")
        got, sent = f"/tmp/got-{lab.name}", f"/tmp/sent-{lab.name}"
        before = tcp_checksum_errors(receiver)
        receiver.exec(
            f"rm -f {got}; setsid -f socat -u TCP-LISTEN:{TRANSFER_PORT},reuseaddr "
            f"OPEN:{got},creat,trunc > /dev/null 2>&1 < /dev/null"
        )
        digest = sender.exec(f"head -c 4000000 /dev/urandom > {sent} && sha256sum < {sent}")
        expect.eventually(
            lambda: sender.exec(f"socat -u FILE:{sent} TCP:{receiver.ip}:{TRANSFER_PORT}"),
            within=5,
            what="the transfer",
        )

        def arrived() -> None:
            assert receiver.exec(f"sha256sum < {got}").stdout == digest.stdout

        expect.eventually(arrived, within=10, what="the received file's digest")
        assert tcp_checksum_errors(receiver) == before

    def test_the_wire_shows_the_encapsulation(self, lab):
        client, web = lab.pod("client-1"), lab.pod("web-2")
        packet = capture_one(
            web.node,
            "eth0",
            self.WIRE.format(client=client.ip, web=web.ip),
            lambda: client.ping(web, count=2),
        )
        print(f"[labkit] on the underlay: {packet}")


@pytest.mark.topology("backend-vxlan")
class TestVxlan(BackendContract):
    WIRE = f"udp dst port {vxlan.PORT}"

    def test_vxlan_device(self, lab):
        details = lab.node("node-1").exec(f"ip -d link show {vxlan.DEVICE}").stdout
        assert f"mtu {lab.cluster.underlay_mtu - vxlan.OVERHEAD} " in details
        assert f"vxlan id {vxlan.VNI} " in details and f"dstport {vxlan.PORT} " in details


@pytest.mark.topology("backend-host-gw")
class TestHostGw(BackendContract):
    NEEDS = ("l2-underlay",)
    WIRE = "icmp and src host {client} and dst host {web}"  # pod addresses, as sent

    def test_routes_point_at_the_peer_node(self, lab):
        route = lab.node("node-1").exec(f"ip route get {lab.pod('web-2').ip}").stdout
        assert f"via {lab.node('node-2').ip} dev eth0" in route


@pytest.mark.topology("backend-udp")
class TestUdp(BackendContract):
    WIRE = f"udp dst port {udp.PORT}"

    def test_status_shows_the_tunnels(self, lab):

        assert lab.describe()["udp_tunnels"] == {
            "node-1": {"lkudp-1": True},
            "node-2": {"lkudp-0": True},
        }

    def test_a_socat_holds_each_tunnel(self, lab):
        for node in lab.nodes():
            tunnels = lab.routing.udp_tunnels(node)
            assert tunnels and all(tunnels.values()), f"{node.name}: {tunnels}"
            assert "socat" in node.exec("ps -o comm= -e").stdout

    def test_routes_go_into_the_peers_tunnel(self, lab):
        route = lab.node("node-1").exec(f"ip route get {lab.pod('web-2').ip}").stdout
        assert "dev lkudp-1 " in route


@pytest.mark.topology("backend-bgp")
class TestBgp(BackendContract):
    NEEDS = ("l2-underlay",)
    WIRE = "icmp and src host {client} and dst host {web}"

    def test_every_node_learned_every_other_pod_subnet(self, lab):
        lab.routing.wait_bgp_converged()  # hold time 3 s: a starved CPU can flap a session
        subnets = lab.addresses.pod_subnets
        for node in lab.nodes():
            sessions = lab.routing.bgp_protocols(node)
            assert sessions and all(s.established for s in sessions.values()), sessions
            others = {subnet for name, subnet in subnets.items() if name != node.name}
            assert lab.routing.bgp_routes(node) == others
            # The node's own block: a blackhole behind the bridge's connected route.
            assert f"blackhole {subnets[node.name]} proto bird" in node.exec("ip route").stdout

    def test_status_shows_birds_sessions(self, lab):
        lab.routing.wait_bgp_converged()  # hold time 3 s: a starved CPU can flap a session
        sessions = lab.describe()["bgp"]
        assert sessions == {
            "node-1": {"peer_node_2": "up Established"},
            "node-2": {"peer_node_1": "up Established"},
        }

    def test_stopping_bird_withdraws_the_subnet(self, lab, measure):
        stopped, watcher = lab.node("node-2"), lab.node("node-1")
        subnet = lab.addresses.pod_subnets["node-2"]
        hold = lab.topology.cluster.bgp.hold_time
        try:
            start = time.perf_counter()
            lab.routing.stop_bird(stopped)
            _wait_withdrawn(lab, watcher, subnet, hold, f"withdrawal of {subnet} from node-1")
            measure("bgp_withdraw_after_stop_s", time.perf_counter() - start, "s")
            assert not lab.pod("client-1").ping(lab.pod("web-2"), count=1).ok
        finally:
            lab.routing.start_bird(stopped)
            lab.routing.wait_bgp_converged()
        assert lab.pod("client-1").ping(lab.pod("web-2")).loss == 0

    def test_a_hung_bird_is_dropped_by_the_hold_timer(self, lab, measure):
        """BIRD frozen (SIGSTOP): no Cease, no keepalives; peers give up after the hold time."""
        frozen, watcher = lab.node("node-2"), lab.node("node-1")
        subnet = lab.addresses.pod_subnets["node-2"]
        hold = lab.topology.cluster.bgp.hold_time
        try:
            start = time.perf_counter()
            lab.routing.freeze_bird(frozen)
            # The hold time, plus the time to notice (routes are polled).
            _wait_withdrawn(
                lab,
                watcher,
                subnet,
                hold + 3,
                f"withdrawal of {subnet} after the hold time ({hold} s)",
            )
            measure("bgp_withdraw_after_hang_s", time.perf_counter() - start, "s")
            assert "Hold timer expired" in lab.routing.bird_protocols_text(watcher)
        finally:
            lab.routing.freeze_bird(frozen, False)
            lab.routing.wait_bgp_converged()


@pytest.mark.topology("pod-ptp")
class TestPtpPods(BackendContract):
    """cluster.cni_plugin: ptp (kindnet, Calico): a routed veth per pod, no bridge."""

    WIRE = f"udp dst port {vxlan.PORT}"

    def test_no_bridge_each_pod_is_a_host_route_to_its_veth(self, lab):
        assert lab.describe()["cni_plugin"] == "ptp"
        node = lab.node("node-1")
        assert "cni0" not in node.exec("ip -br link").stdout
        for pod in ("web-1", "client-1"):
            route = node.exec(f"ip route get {lab.pod(pod).ip}").stdout
            assert f"{lab.pod(pod).ip} dev veth" in route, route

    def test_an_address_no_pod_has_is_refused_by_its_node(self, lab):
        """No bridge holds the block: the node's unreachable route answers at once
        (without it the packet would follow the node's default route out)."""
        subnet = lab.addresses.pod_subnets["node-1"]
        free = subnet.network_address + 200
        assert free not in lab.addresses.pod_ips.values()
        result = lab.pod("client-2").ping(free, count=1)
        assert result.status == "unreachable", result
        assert lab.pod("client-1").tcp(free, 80).status == "unreachable"

    def test_a_pod_reaches_itself_through_its_service_masqueraded(self, lab):
        web = lab.pod("web-1")
        answer = web.http(lab.service("solo").vip, 80)
        assert answer.ok and answer.pod == "web-1", answer
        assert answer.client_ip == str(lab.addresses.gateway("node-1")), answer

    def test_a_neighbour_reaches_a_service_endpoint_on_its_node_with_its_own_address(self, lab):
        client = lab.pod("client-1")
        answer = client.http(lab.service("solo").vip, 80)
        assert answer.ok and answer.pod == "web-1" and answer.client_ip == str(client.ip), answer

    def test_node_port_on_either_node(self, lab):
        port = lab.service("web").node_port(80)
        for node in ("node-1", "node-2"):
            answer = lab.pod("client-2").http(lab.node(node), port)
            assert answer.ok and answer.pod in ("web-1", "web-2"), (node, answer)

    def test_policy_isolates_a_pod_from_its_neighbour_and_the_other_node(self, lab):
        web = lab.pod("web-1")
        lab.set_policies(
            {"solo-from-none": {"pod_selector": {"match_labels": {"solo": "yes"}},
                                "policy_types": ["Ingress"]}}
        )  # fmt: skip
        try:
            for client in ("client-1", "client-2"):
                assert lab.pod(client).tcp(web, 9000).status == "denied", client
            assert lab.pod("client-1").tcp(lab.pod("web-2"), 9000, payload="hi\n").ok
        finally:
            lab.set_policies({})
        assert lab.pod("client-1").tcp(web, 9000, payload="hi\n").served_by == "web-1"


def _wait_withdrawn(lab, watcher, subnet, within: float, what: str) -> None:
    """Until BIRD on `watcher` no longer has `subnet` in the kernel (polled fast)."""

    def withdrawn() -> None:
        routes = lab.routing.bgp_routes(watcher)
        assert subnet not in routes, f"{subnet} still in {sorted(map(str, routes))}"

    expect.eventually(withdrawn, within=within, every=0.05, what=what)
