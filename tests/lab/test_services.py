"""Services: ClusterIP, NodePort, DNS and endpoints that follow the pods.

Modelled on Kubernetes' service e2e checks; each runs in kube-proxy's
iptables mode (topologies/services.yaml) and nftables mode
(topologies/services-nft.yaml). ipvs mode has its own lab where the kernel
has IPVS, and skips with the probed reason where it does not.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from shlex import quote as q

import pytest
from typer.testing import CliRunner

from labkit import Endpoint, Lab, PodHandle, expect
from labkit.errors import FeatureMissing
from labkit.runtime import features
from labkit.topology.loader import load_topology

both = pytest.mark.parametrize(
    "mode",
    [
        pytest.param("iptables", marks=pytest.mark.topology("services"), id="iptables"),
        pytest.param("nftables", marks=pytest.mark.topology("services-nft"), id="nftables"),
    ],
)
iptables_only = pytest.mark.topology("services")

# Many new connections from one process: one exec instead of one per request.
_HITS = r"""
import json, sys, urllib.request
url, count = sys.argv[1], int(sys.argv[2])
seen = []
for _ in range(count):
    try:
        seen.append(urllib.request.urlopen(url, timeout=2).read().decode())
    except Exception as exc:
        seen.append("error: " + type(exc).__name__)
print(json.dumps(seen))
"""

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


def hits(source: Endpoint, vip: object, port: int, count: int) -> list[str]:
    """The pod names that answered `count` new HTTP connections (GET /hostname)."""
    url = f"http://{vip}:{port}/hostname"
    out = source.exec(f"python3 -c {q(_HITS)} {q(url)} {count}", timeout=count * 2 + 10).stdout
    return list(json.loads(out))


def endpoint_pods(lab: Lab, service: str) -> set[str]:
    return {e.pod for e in lab.service(service).endpoints()}


def node_addresses(lab: Lab, node: str) -> set[str]:
    """A node's own addresses: underlay, the VXLAN device (.0) and the pod bridge (.1)."""
    subnet = lab.addresses.pod_subnets[node]
    return {str(lab.node(node).ip), str(subnet.network_address), str(subnet.network_address + 1)}


# -- ClusterIP ---------------------------------------------------------------------------------


@both
def test_pod_reaches_cluster_ip_over_tcp_and_udp(lab, mode):
    client, echo = lab.pod("client"), lab.service("echo")
    tcp = client.tcp(echo.vip, 9000, payload="hi")
    udp = client.udp(echo.vip, 9000)
    assert tcp.ok and tcp.served_by in endpoint_pods(lab, "echo"), tcp
    assert udp.ok and udp.served_by in endpoint_pods(lab, "echo"), udp


@both
def test_multiport_and_same_port_over_tcp_and_udp(lab, mode):
    echo = lab.service("echo")
    assert {(p.port, p.protocol) for p in echo.ports} == {(9000, "TCP"), (9000, "UDP")}
    client = lab.pod("client")
    assert client.tcp(echo.vip, 9000, payload="x").ok
    assert client.udp(echo.vip, 9000).ok
    # The other port of the same service is not served.
    assert not client.tcp(echo.vip, 9001, timeout=1).ok


@both
def test_node_reaches_cluster_ip(lab, mode):
    web = lab.service("web")
    for node in ("node-1", "node-3"):
        answer = lab.node(node).http(web.vip, 80)
        assert answer.ok and answer.pod in endpoint_pods(lab, "web"), answer


@both
def test_pod_source_ip_is_kept(lab, mode):
    client = lab.pod("client")
    answer = client.http(lab.service("web").vip, 80)
    assert answer.client_ip == str(client.ip), answer.body


@both
def test_every_endpoint_answers(lab, mode):
    seen = set(hits(lab.pod("client"), lab.service("web").vip, 80, 30))
    assert seen == endpoint_pods(lab, "web") == {"web-1", "web-2", "web-3"}


@both
def test_spread_is_balanced(lab, mode, measure):
    count = 90
    seen = Counter(hits(lab.pod("client"), lab.service("web").vip, 80, count))
    pods = sorted(endpoint_pods(lab, "web"))
    assert set(seen) == set(pods), seen
    expected = count / len(pods)
    chi_square = sum((seen[p] - expected) ** 2 / expected for p in pods)
    measure(f"{mode}_spread_chi_square", chi_square)
    # df = 2: above 13.82 has probability 0.001 for a fair spread.
    assert chi_square < 13.82, f"unbalanced: {dict(seen)}"


@both
def test_client_ip_affinity_sticks(lab, mode):
    for client in (lab.pod("client"), lab.pod("solo-1")):
        seen = hits(client, lab.service("web-sticky").vip, 80, 15)
        assert len(set(seen)) == 1 and seen[0] in endpoint_pods(lab, "web-sticky"), seen


@both
def test_hairpin_pod_reaches_itself_through_its_service(lab, mode):
    solo = lab.pod("solo-1")
    answer = solo.http(lab.service("solo").vip, 80)
    assert answer.ok and answer.pod == "solo-1", answer
    # The reply could not come back to the pod's own address: it was masqueraded.
    assert answer.client_ip in node_addresses(lab, "node-1"), answer.client_ip


@both
def test_endpoint_on_the_callers_bridge(lab, mode):
    """client and solo-1 share node-1's bridge: br_netfilter must see the reply."""
    assert (
        lab.node("node-1").exec("sysctl -n net.bridge.bridge-nf-call-iptables").stdout.strip()
        == "1"
    )
    client = lab.pod("client")
    answer = client.http(lab.service("solo").vip, 80)
    assert answer.ok and answer.pod == "solo-1" and answer.client_ip == str(client.ip), answer


@both
def test_without_bridge_netfilter_the_same_bridge_endpoint_breaks(lab, mode):
    """The reason for bridge-nf-call-iptables: the endpoint's reply is bridged
    straight to the client, never un-DNATed, and the client drops it."""
    node, client = lab.node("node-1"), lab.pod("client")
    knob = "net.bridge.bridge-nf-call-iptables"
    node.exec(f"sysctl -qw {knob}=0")
    try:
        assert not client.tcp(lab.service("solo").vip, 80, timeout=1).ok
    finally:
        node.exec(f"sysctl -qw {knob}=1")
    assert client.tcp(lab.service("solo").vip, 80).ok


@both
def test_service_without_endpoints_refuses_at_once(lab, mode):
    empty = lab.service("empty")
    assert empty.endpoints() == []
    result = lab.pod("client").tcp(empty.vip, 80, timeout=3)
    assert result.refused, result  # refused (REJECT), not a timeout
    result = lab.node("node-2").tcp(empty.vip, 80, timeout=3)
    assert result.refused, result


@both
def test_status_reports_a_selector_that_matches_nothing(lab, mode):

    document = lab.describe()
    empty = next(s for s in document["services"] if s["name"] == "empty")
    assert empty["endpoints"] == []
    assert any("matches no pod" in note for note in empty["notes"])


# -- NodePort ------------------------------------------------------------------------------------


@both
def test_pod_reaches_node_port_on_its_node_and_another(lab, mode):
    client = lab.pod("client")
    port = lab.service("web-np").node_port("http")
    assert port == 30080
    for node in ("node-1", "node-2"):
        answer = client.http(lab.node(node), port)
        assert answer.ok and answer.pod in endpoint_pods(lab, "web-np"), (node, answer)


@both
def test_outside_client_reaches_node_port_masqueraded(lab, mode):
    outside = lab.node("outside")
    assert "external" in outside.roles and "outside" not in lab.addresses.pod_subnets
    port = lab.service("web-np").node_port("http")
    for node in ("node-1", "node-2", "node-3"):
        answer = outside.http(lab.node(node), port)
        assert answer.ok, (node, answer)
        # The endpoint saw the node it was reached through, not the outside client.
        assert answer.client_ip != str(outside.ip)
        assert answer.client_ip in node_addresses(lab, node), (node, answer.client_ip)


# -- DNS -------------------------------------------------------------------------------------------


@both
def test_service_names_resolve_through_the_cluster_dns(lab, mode):
    client, web = lab.pod("client"), lab.service("web")
    for name in ("web", "web.default", "web.default.svc", "web.default.svc.cluster.local"):
        out = client.exec(f"getent hosts {name}", check=False).stdout.split()
        assert out[:1] == [str(web.vip)], (name, out)
    answer = client.exec("dig +short @10.96.0.10 web-np.default.svc.cluster.local").stdout.strip()
    assert answer == str(lab.service("web-np").vip)
    assert client.exec("getent hosts nothing-here", check=False).exit_code != 0
    assert client.http("web", 80).ok


@both
def test_dns_and_rules_follow_a_new_service(lab, mode):
    client = lab.pod("client")
    extra = lab.services.add(
        "extra", {"selector": {"app": "solo"}, "ports": [{"port": 81, "target_port": 8080}]}
    )
    vip = extra.vip
    try:
        assert client.exec("getent hosts extra").stdout.split()[0] == str(vip)
        assert client.http("extra", 81).pod == "solo-1"
    finally:
        lab.services.delete("extra")
    assert client.exec("getent hosts extra", check=False).exit_code != 0
    assert not client.tcp(vip, 81, timeout=1).ok


# -- endpoints follow the pods ------------------------------------------------------------------------


def _served_from_every_node(lab: Lab, service: str) -> set[str]:
    """The pods that answer the service, seen from a pod and from every cluster node."""
    vip = lab.service(service).vip
    sources: list[Endpoint] = [lab.pod("client"), *(lab.node(n) for n in lab.addresses.pod_subnets)]
    found: set[str] = set()
    for source in sources:
        found |= set(hits(source, vip, 80, 12))
    return found


def _changed(lab: Lab, measure, what: str, mode: str) -> None:
    summary = lab.services.last_sync()
    assert summary is not None
    measure(f"{mode}_programming_seconds_{what}", summary["seconds"], "s")


@both
def test_endpoints_follow_kill_and_restart(lab, mode, measure):
    churn: PodHandle = lab.pod("churn-1")
    churn.kill()
    _changed(lab, measure, "kill", mode)
    assert endpoint_pods(lab, "churn") == {"churn-2"}
    # In effect on every node as soon as the call returns.
    assert _served_from_every_node(lab, "churn") == {"churn-2"}
    churn.restart()
    _changed(lab, measure, "restart", mode)
    assert endpoint_pods(lab, "churn") == {"churn-1", "churn-2"}
    expect.eventually(
        lambda: _assert_equal(_served_from_every_node(lab, "churn"), {"churn-1", "churn-2"}),
        within=10,
        what="the restarted pod serving again",
    )


def _assert_equal(found: object, wanted: object) -> None:
    assert found == wanted, f"{found} != {wanted}"


@both
def test_endpoints_follow_relabel(lab, mode, measure):
    lab.set_labels("churn-2", {"app": "elsewhere"})
    try:
        _changed(lab, measure, "relabel", mode)
        assert endpoint_pods(lab, "churn") == {"churn-1"}
        assert _served_from_every_node(lab, "churn") == {"churn-1"}
    finally:
        lab.set_labels("churn-2", {"app": "churn"})
    assert _served_from_every_node(lab, "churn") == {"churn-1", "churn-2"}


@both
def test_endpoints_follow_add_and_delete(lab, mode, measure):
    lab.add_pod("churn-3", {"node": "node-1", "labels": {"app": "churn"}, "run": ["echo-server"]})
    try:
        _changed(lab, measure, "add", mode)
        assert endpoint_pods(lab, "churn") == {"churn-1", "churn-2", "churn-3"}
        expect.eventually(
            lambda: _assert_equal(
                _served_from_every_node(lab, "churn"), {"churn-1", "churn-2", "churn-3"}
            ),
            within=10,
            what="the new pod serving",
        )
    finally:
        lab.delete_pod("churn-3")
    _changed(lab, measure, "delete", mode)
    assert endpoint_pods(lab, "churn") == {"churn-1", "churn-2"}
    assert _served_from_every_node(lab, "churn") == {"churn-1", "churn-2"}


@both
def test_udp_conntrack_of_a_removed_endpoint_is_flushed(lab, mode):
    client, vip = lab.pod("client"), lab.service("churn").vip

    def udp_from(port: int) -> str:
        return client.exec(f"python3 -c {q(_UDP_FROM_PORT)} {vip} 9000 {port}").stdout.strip()

    first = udp_from(40123)
    assert first in {"churn-1", "churn-2"}
    assert udp_from(40123) == first  # the same flow, the same endpoint
    lab.set_labels(first, {"app": "elsewhere"})
    try:
        # Without the flush the flow would still be DNATed to the removed endpoint.
        assert udp_from(40123) == ({"churn-1", "churn-2"} - {first}).pop()
    finally:
        lab.set_labels(first, {"app": "churn"})


@both
def test_cli_pod_commands_update_endpoints(lab, mode):
    from labkit.cli import app

    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(app, [*args, "--lab", lab.name])
        assert result.exit_code == 0, result.output
        return result.output

    def cli_endpoints() -> set[str]:
        return {e.pod for e in _saved(lab).services.endpoints("churn")}

    cli("pod", "add", "churn-9", "--node", "node-3", "--label", "app=churn", "--run", "echo-server")
    assert cli_endpoints() == {"churn-1", "churn-2", "churn-9"}
    cli("pod", "kill", "churn-9")
    assert cli_endpoints() == {"churn-1", "churn-2"}
    cli("pod", "restart", "churn-9")
    assert cli_endpoints() == {"churn-1", "churn-2", "churn-9"}
    cli("pod", "label", "churn-9", "app=other")
    assert cli_endpoints() == {"churn-1", "churn-2"}
    cli("pod", "label", "churn-9", "app=churn")
    output = cli("pod", "delete", "churn-9")
    assert "programmed" in output  # the CLI prints the programming latency
    assert cli_endpoints() == {"churn-1", "churn-2"}
    _refresh(lab)
    assert _served_from_every_node(lab, "churn") == {"churn-1", "churn-2"}


def _saved(lab: Lab) -> Lab:
    """The lab as the CLI left it in its state file."""
    return Lab.attach(lab.name, lab.runtime)


def _refresh(lab: Lab) -> None:
    """The CLI changed the lab through another Lab object: take its state back."""
    lab.reload()


# -- rules changed by hand ---------------------------------------------------------------------------


@both
def test_rules_deleted_by_hand_are_restored_on_the_next_sync(lab, mode):
    web, node = lab.service("web"), lab.node("node-2")
    if mode == "iptables":
        listing = node.exec("iptables -t nat -S KUBE-SERVICES").stdout
        rule = next(line for line in listing.splitlines() if f"-d {web.vip}/32" in line)
        node.exec(f"iptables -t nat {rule.strip().replace('-A ', '-D ', 1)}")
    else:
        node.exec(f"nft delete element ip kube-proxy service-ips {{ {web.vip} . tcp . 80 }}")
    assert not node.http(web.vip, 80, timeout=1).ok  # really gone
    report = lab.services.sync()
    assert report.drifted == ["node-2"]
    assert node.http(web.vip, 80).ok
    assert lab.services.sync().drifted == []  # and nothing else was touched


@both
def test_rules_read_like_kube_proxys(lab, mode):
    node = lab.node("node-1")
    if mode == "iptables":
        nat = node.exec("iptables-save -t nat").stdout
        assert (
            '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'
            in nat
        )
        assert '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in nat
        assert "-m statistic --mode random --probability 0.33333333349" in nat
        last = [line for line in nat.splitlines() if line.startswith("-A KUBE-SERVICES")][-1]
        assert last.endswith("-j KUBE-NODEPORTS")  # nodeports last, as kube-proxy has it
        assert "-m recent --set --name KUBE-SEP-" in nat
    else:
        table = node.exec("nft list table ip kube-proxy").stdout
        assert "numgen random mod 3 vmap" in table
        assert "dnat to 10.244." in table
        assert "map service-ips" in table and "map service-nodeports" in table


# -- hostPort: what the flat network replaces ------------------------------------------------------------


@iptables_only
def test_host_port_maps_node_address_to_pod_and_the_addresses_disagree(lab):
    outside, node2, pod = lab.node("outside"), lab.node("node-2"), lab.pod("hostport-1")
    # The outside client cannot reach the pod network at all ...
    assert not outside.tcp(pod, 8080, timeout=1).ok
    # ... but reaches the pod through node-2's port 8081 (CNI portmap DNAT).
    answer = outside.http(node2, 8081)
    assert answer.ok and answer.pod == "hostport-1", answer
    # The client talks to the node's address; the pod knows itself by its pod IP:
    # what it would register (its address) is not what clients must dial.
    assert answer.data["pod_ip"] == str(pod.ip) != str(node2.ip)
    assert answer.client_ip == str(outside.ip)
    # Over the flat pod network both sides agree on both addresses.
    client = lab.pod("client")
    flat = client.http(pod, 8080)
    assert flat.data["pod_ip"] == str(pod.ip) and flat.client_ip == str(client.ip)


# -- ipvs ----------------------------------------------------------------------------------------------------


@pytest.fixture
def ipvs_topology(tmp_path) -> Iterator[str]:
    text = load_topology("services").model_dump_json(exclude_none=True)
    document = json.loads(text)
    document["name"] = "services-ipvs"
    document["cluster"]["proxy_mode"] = "ipvs"
    path = tmp_path / "services-ipvs.yaml"
    path.write_text(json.dumps(document))
    yield str(path)


def test_ipvs_mode_fails_before_anything_is_created(ipvs_topology):
    from labkit.runtime.docker import DockerRuntime, engine_available

    if not engine_available()[0]:
        pytest.skip("no Docker engine")
    if features.has("ipvs"):
        pytest.skip("the host kernel has IPVS: this checks the refusal on hosts without it")
    runtime = DockerRuntime()
    with pytest.raises(FeatureMissing, match="ipvs"):
        Lab.up(ipvs_topology, runtime=runtime)
    assert not any(name.endswith("services-ipvs") for name in runtime.lab_names())


def test_ipvs_mode_services(ipvs_topology):
    """kube-proxy's IPVS mode: the core service checks, on its own lab (kernels with IPVS)."""
    if not features.has("ipvs"):
        pytest.skip(features.missing_reason("ipvs"))
    lab = Lab.up(ipvs_topology)
    try:
        web = lab.service("web")
        saved = lab.node("node-1").exec("ipvsadm-save -n").stdout
        assert f"-A -t {web.vip}:80 -s rr" in saved, saved  # IPVS balances, not iptables
        # ClusterIP over TCP: every endpoint answers.
        seen = set(hits(lab.pod("client"), web.vip, 80, 30))
        assert seen == endpoint_pods(lab, "web") == {"web-1", "web-2", "web-3"}, seen
        # NodePort from a client outside the pod network, through every node.
        port = lab.service("web-np").node_port("http")
        for node in ("node-1", "node-2", "node-3"):
            answer = lab.node("outside").http(lab.node(node), port)
            assert answer.ok and answer.pod in endpoint_pods(lab, "web-np"), (node, answer)
        # A service with no endpoints refuses at once.
        result = lab.pod("client").tcp(lab.service("empty").vip, 80, timeout=3)
        assert result.refused, result
    finally:
        lab.down()
