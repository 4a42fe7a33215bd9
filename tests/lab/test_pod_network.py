"""The pod network on the flannel-style VXLAN backend: real lab, real packets."""

from __future__ import annotations

import pytest

from labkit import expect

pytestmark = pytest.mark.topology("flannel-vxlan")


def test_two_processes_of_one_pod_talk_over_localhost(lab):
    sidecar = lab.pod("sidecar")
    expect.eventually(
        lambda: sidecar.tcp("127.0.0.1", 8080).ok or _fail("not listening"), within=10
    )
    reply = sidecar.http("127.0.0.1", 8080)
    assert reply.pod == "sidecar"
    assert reply.client_ip == "127.0.0.1"


def test_pod_to_pod_on_one_node(lab):
    client, web1 = lab.pod("client"), lab.pod("web-1")
    assert client.node.name == web1.node.name
    assert client.ping(web1).loss == 0


def test_pods_reach_each_other_across_nodes(lab):
    client, web2 = lab.pod("client"), lab.pod("web-2")
    assert client.node.name != web2.node.name
    assert client.ping(web2).loss == 0


def test_full_matrix(lab):
    expect.reachable(lab.pods(), lab.pods())


def test_node_reaches_its_own_pod_and_a_remote_pod(lab):
    node1 = lab.node("node-1")
    expect.reachable([node1], [lab.pod("web-1"), lab.pod("web-2")])
    assert node1.http(lab.pod("web-2")).pod == "web-2"


def test_pod_ips_are_unique_and_in_their_node_subnet(lab):
    ips = [pod.ip for pod in lab.pods()]
    assert len(set(ips)) == len(ips)
    for pod in lab.pods():
        assert pod.ip in lab.addresses.pod_subnets[pod.node.name]
        shown = pod.exec("ip -4 -o addr show dev eth0").stdout
        assert f"{pod.ip}/" in shown


def test_peer_sees_the_pods_own_ip_no_nat(lab):
    client = lab.pod("client")
    for web in ("web-1", "web-2"):
        reply = client.http(lab.pod(web), 8080)
        assert reply.pod == web
        assert reply.client_ip == str(client.ip)


def test_tcp_and_udp_to_the_echo_server_across_nodes(lab):
    client, web2 = lab.pod("client"), lab.pod("web-2")
    tcp = client.tcp(web2, 9000, payload="hi\n")
    assert tcp.ok and tcp.served_by == "web-2"
    udp = client.udp(web2, 9000)
    assert udp.ok and udp.served_by == "web-2"


def test_vxlan_device_is_flannel_style(lab):
    node = lab.node("node-1")
    details = node.exec("ip -d link show flannel.1").stdout
    assert "vxlan id 1 " in details and "dstport 8472" in details and "nolearning" in details
    assert f"mtu {lab.cluster.pod_mtu} " in details  # 1450 on one host, 1400 on a swarm overlay
    # Permanent entries for the peer, programmed by labkit (no multicast learning).
    peer = lab.node("node-2")
    assert str(peer.ip) in node.exec("bridge fdb show dev flannel.1").stdout
    pod_mtu = lab.pod("client").exec("cat /sys/class/net/eth0/mtu").stdout.strip()
    assert pod_mtu == str(lab.cluster.pod_mtu)
    assert lab.cluster.pod_mtu == lab.cluster.underlay_mtu - 50


def test_killing_a_pods_process_keeps_its_ip(lab):
    web2 = lab.pod("web-2")
    client = lab.pod("client")
    web2.kill()
    assert web2.containers() == {"echo-server": False}
    assert not web2.ready()
    assert not client.tcp(web2, 8080).ok
    assert client.ping(web2).loss == 0  # the namespace and IP stay
    web2.restart()
    expect.eventually(lambda: client.http(web2).pod == "web-2" or _fail("not serving"), within=10)
    assert web2.ip == lab.addresses.pod_ips["web-2"]


def test_data_crosses_vxlan_intact(lab):
    """Checksum offload stays on for VXLAN: 8 MB must arrive bit for bit."""
    sender, receiver = lab.pod("client"), lab.pod("web-2")
    receiver.exec("rm -f /tmp/got; (nc -l -p 7001 > /tmp/got &) ; true")
    sent = sender.exec(
        "head -c 8000000 /dev/urandom > /tmp/sent && sha256sum < /tmp/sent && "
        f"for i in 1 2 3 4 5 6 7 8 9 10; do nc -N {receiver.ip} 7001 < /tmp/sent && break; sleep 0.2; done"
    ).stdout.split()[0]
    got = expect.eventually(
        lambda: _same(receiver.exec("sha256sum < /tmp/got").stdout.split()[0], sent), within=10
    )
    assert got == sent


def _same(value: str, wanted: str) -> str:
    assert value == wanted, f"{value} != {wanted}"
    return value


def test_pod_output_is_retrievable(lab):
    assert "listening" in lab.pod("web-1").logs().lower()


def test_testinfra_host_per_node(lab):
    if lab.runtime.engine_info().get("hosts"):
        pytest.skip(
            "testinfra's docker:// backend reaches this machine's engine only, not a swarm's hosts"
        )
    host = lab.node("node-1").host
    assert host.interface("cni0").exists
    assert str(lab.addresses.gateway("node-1")) in host.interface("cni0").addresses


def test_throughput_across_nodes(lab, measure):
    result = lab.iperf(lab.pod("client"), lab.pod("web-2"), seconds=1)
    measure("vxlan_gbit_per_s", result.gbit_per_s, "Gbit/s")
    assert result.gbit_per_s > 0.05


def _fail(message: str) -> bool:
    raise AssertionError(message)


def test_cni_add_all_wires_pods_side_by_side_and_a_bad_one_fails_alone(lab):
    """labkit-cni add-all: every pod at once; one refused (an address outside the node's
    range) makes it exit 1 with the plugin's error, its half-made veth undone, and the
    others wired as if alone."""
    node = lab.node("node-1")
    subnet = lab.addresses.pod_subnets["node-1"]
    good = [f"lkt-good-{i}" for i in range(3)]
    entries = [
        '{"pod": "lkt-bad", "netns": "/var/run/netns/lkt-bad", '
        '"args": "IgnoreUnknown=1;IP=10.99.0.5", "out": "/tmp/lkt-bad.json"}'
    ] + [
        f'{{"pod": "{pod}", "netns": "/var/run/netns/{pod}", '
        f'"args": "IgnoreUnknown=1;IP={subnet[200 + i]}", "out": "/tmp/{pod}.json"}}'
        for i, pod in enumerate(good)
    ]  # fmt: skip  (the bad one first: it stops none of the others)
    pods = [*good, "lkt-bad"]
    made = "; ".join(f"ip netns add {pod}" for pod in pods)
    wired = node.exec(
        f"{made}; labkit-cni add-all <<'EOF'\n" + "\n".join(entries) + "\nEOF", check=False
    )
    try:
        assert wired.exit_code == 1
        assert "10.99.0.5" in wired.stderr  # the plugin's own error, passed on
        assert sorted(line.split()[2] for line in wired.stdout.splitlines()) == good
        for i, pod in enumerate(good):
            shown = node.exec(f"ip -n {pod} -4 -o addr show eth0").stdout
            assert f"{subnet[200 + i]}/24" in shown
        assert node.exec("ip -n lkt-bad link show eth0", check=False).exit_code != 0
        assert node.exec("ls /var/lib/labkit/cni/lkt-bad.json", check=False).exit_code != 0
    finally:
        node.exec(
            "; ".join(
                f"labkit-cni del {pod} /var/run/netns/{pod} >/dev/null 2>&1; ip netns del {pod}"
                for pod in pods
            ),
            check=False,
        )
    leased = node.exec("ls /var/lib/cni/networks/labkit").stdout.split()
    assert not {str(subnet[200 + i]) for i in range(3)} & set(leased)  # DEL released them
