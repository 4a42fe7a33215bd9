"""Stable addresses: pinned and sticky pod IPs, a floating IP, a pod that moves."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from cli_runner import labkit

from labkit import expect
from labkit.errors import UsageError
from labkit.load import ContinuousClient

pytestmark = pytest.mark.topology("stable-ips")

FLOATING = IPv4Address("192.0.2.10")
LOAD_SECONDS = 5.0  # the continuous clients' run, around a move (which takes under a second)


def answers(source, target, port=8080, pod="web"):
    """A check for `expect.eventually`: `target` answers HTTP, from `pod`; the reply."""

    def check():
        reply = source.http(target, port, timeout=1)
        assert reply.ok and reply.pod == pod, f"{source} -> {target}:{port}: {reply}"
        return reply

    return check


@pytest.fixture
def web_back_on_node_1(lab):
    yield
    if lab.pod("web").node.name != "node-1":
        lab.move_pod("web", "node-1")


def test_a_pinned_ip_is_honoured(lab):
    pinned = lab.pod("pinned")
    assert pinned.ip == IPv4Address("10.244.1.77")
    assert "10.244.1.77/24" in pinned.exec("ip -4 -o addr show dev eth0").stdout
    reply = expect.eventually(answers(lab.pod("client"), pinned, pod="pinned"), within=10)
    assert reply.data["pod_ip"] == "10.244.1.77"


def test_a_restart_keeps_the_ip(lab):
    sticky = lab.pod("sticky")
    before = sticky.ip
    sticky.restart()
    assert lab.pod("sticky").ip == before
    expect.eventually(answers(lab.pod("client"), before, pod="sticky"), within=10)


def test_a_pod_recreated_on_its_node_gets_its_ip_back(lab):
    before = lab.pod("sticky").ip
    lab.delete_pod("sticky")
    # A pod created meanwhile does not take the address the deleted pod may want back.
    intruder = lab.add_pod("intruder", {"node": "node-2"})
    try:
        assert intruder.ip != before
        again = lab.add_pod("sticky", {"node": "node-2", "run": ["echo-server"]})
        assert again.ip == before
        expect.eventually(answers(lab.pod("client"), before, pod="sticky"), within=10)
    finally:
        lab.delete_pod("intruder")


def test_the_floating_ip_reaches_its_pod_from_the_underlay_and_from_pods(lab):
    outside = lab.node("outside")
    reply = expect.eventually(answers(outside, FLOATING), within=10)
    assert reply.client_ip == str(outside.ip)  # DNAT only: the pod sees who called
    assert reply.data["pod_ip"] == str(lab.pod("web").ip)
    expect.eventually(answers(lab.pod("client"), FLOATING), within=10)


def test_a_move_gives_a_new_ip_and_every_entry_point_follows(lab, measure, web_back_on_node_1):
    web, client, outside = lab.pod("web"), lab.pod("client"), lab.node("outside")
    service = lab.service("web")
    old_ip = web.ip
    expect.eventually(answers(client, service.vip, 80), within=15)
    expect.eventually(answers(outside, FLOATING), within=10)
    # Requests one after another for a fixed time around the move: before, during, after.
    via_floating = ContinuousClient(
        outside, FLOATING, 8080, timeout=0.5, duration=LOAD_SECONDS
    ).start()
    via_vip = ContinuousClient(client, service.vip, 80, timeout=0.5, duration=LOAD_SECONDS).start()
    expect.eventually(answers(client, service.vip, 80), within=5)
    moved = lab.move_pod("web", "node-2")
    assert moved.node.name == "node-2"
    assert moved.ip != old_ip and moved.ip in lab.addresses.pod_subnets["node-2"]
    after_floating = expect.eventually(answers(outside, FLOATING), within=15)
    after_vip = expect.eventually(answers(client, service.vip, 80), within=15)
    after_name = expect.eventually(answers(client, service.dns_name, 80), within=15)
    results = {"floating_ip": via_floating.collect(), "service_vip": via_vip.collect()}
    assert after_floating.data["pod_ip"] == str(moved.ip) == after_vip.data["pod_ip"]
    assert after_name.data["pod_ip"] == str(moved.ip)
    assert [e.ip for e in service.endpoints()] == [moved.ip]
    for what, result in results.items():
        assert result.recovered and result.ok > 0, f"{what}: {result.summary()}"
        measure(f"move_{what}_requests", result.sent)
        measure(f"move_{what}_failed", result.failed)
        measure(f"move_{what}_disruption_s", result.outage_s, "s")


def test_moving_to_an_unknown_node_changes_nothing(lab):
    before = (lab.pod("web").node.name, lab.pod("web").ip)
    with pytest.raises(UsageError, match="no node 'node-9'"):
        lab.move_pod("web", "node-9")
    with pytest.raises(UsageError, match="node 'outside' runs no pods"):
        lab.move_pod("web", "outside")
    result = labkit("pod", "move", "web", "node-9", "--lab", lab.name)
    assert result.returncode == 2
    assert "no node 'node-9'" in result.stderr
    assert (lab.pod("web").node.name, lab.pod("web").ip) == before


def test_labkit_pod_move_there_and_back(lab):
    old_ip = lab.pod("sticky").ip
    there = labkit("pod", "move", "sticky", "node-3", "--lab", lab.name)
    assert there.returncode == 0, there.stderr
    assert f"pod sticky moved to node-3: {old_ip} -> 10.244.2." in there.stdout
    back = labkit("pod", "move", "sticky", "node-2", "--lab", lab.name)
    assert back.returncode == 0, back.stderr
    assert back.stdout.strip().endswith(f"-> {old_ip}")  # its old address was kept for it
    expect.eventually(answers(lab.pod("client"), old_ip, pod="sticky"), within=10)
