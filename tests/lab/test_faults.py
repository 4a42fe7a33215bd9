"""Faults: break the lab on purpose and check what breaks, and that it heals.

Every fault is set through the `faults` fixture, which reverts it when the
test ends (the last test checks that none outlived its test).
"""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from cli_runner import labkit

from labkit import expect
from labkit.runtime import features

pytestmark = pytest.mark.topology("faults")

FLOATING = IPv4Address("192.0.2.20")
TCP = expect.tcp(9000, timeout=1)


def split(lab, node: str):
    """(pods on `node`, pods elsewhere)."""
    pods = lab.pods()
    return [p for p in pods if p.node.name == node], [p for p in pods if p.node.name != node]


def cut_off(node_of: dict[str, str], node: str):
    """Truth table: a path works unless exactly one end is on `node`."""
    return lambda s, t: (node_of[s] == node) == (node_of[t] == node)


def all_paths_of_a_node_work(lab, node: str, within: float = 15) -> None:
    """Pods to and from the node's pods, the node's pods behind the Service and the floating IP."""
    here, elsewhere = split(lab, node)
    servers = [p for p in lab.pods() if p.spec.run]
    expect.reachable(lab.pods(), servers, TCP, within=within)
    expect.reachable(here, elsewhere, expect.icmp(count=1), within=within)
    vip = lab.service("web").vip
    for pod in here:
        if pod.spec.run:
            seen = expect.eventually(
                lambda pod=pod: _served_by(lab, vip, pod.name),
                within=within,
                what=f"{pod} behind the VIP",
            )
            assert seen
    expect.eventually(
        lambda: _answers(lab.pod("client"), FLOATING, "web-2"), within=within, what="floating IP"
    )


def _served_by(lab, vip, pod: str) -> bool:
    """Some request through the VIP lands on `pod` (the Service balances at random)."""
    client = lab.pod("client")
    answered = {client.http(vip, 80, timeout=1).pod for _ in range(12)}
    assert pod in answered, f"{pod} did not answer through {vip} (answered: {answered})"
    return True


def _answers(source, target, pod: str) -> bool:
    reply = source.http(target, 8080, timeout=1)
    assert reply.ok and reply.pod == pod, f"{source} -> {target}: {reply}"
    return True


def node_of(lab) -> dict[str, str]:
    return {p.name: p.node.name for p in lab.pods()}


def test_a_partitioned_node_is_cut_off_and_heals(lab, faults):
    expect.reachable(lab.pods(), lab.pods(), expect.icmp(count=1), within=10)
    fault = faults.partition(["node-3"])
    assert fault.others == ["node-1", "node-2"]
    servers = [p for p in lab.pods() if p.spec.run]
    expect.matches(lab.pods(), servers, cut_off(node_of(lab), "node-3"), TCP)
    # The nodes themselves are cut off too, underlay and all.
    assert lab.node("node-1").ping(lab.node("node-3"), count=1).loss == 1.0
    assert lab.node("node-1").ping(lab.node("node-2"), count=1).loss == 0.0
    faults.revert(fault)
    expect.reachable(lab.pods(), servers, TCP, within=10)


def test_a_stopped_node_is_gone_until_it_is_started_again(lab, faults):
    ips = {p.name: p.ip for p in lab.pods()}
    faults.stop_node("node-2")
    here, elsewhere = split(lab, "node-2")
    expect.unreachable(elsewhere, here, TCP)
    faults.start_node("node-2")
    assert {p.name: p.ip for p in lab.pods()} == ips  # the pods came back with their IPs
    all_paths_of_a_node_work(lab, "node-2")
    assert not faults.active


def test_a_restarted_node_serves_again_on_every_path(lab, faults, measure):
    measure("node_restart_rebuild_s", faults.restart_node("node-2"), "s")
    all_paths_of_a_node_work(lab, "node-2")


def test_an_underlay_link_down_cuts_the_node_off_until_it_is_up(lab, faults):
    servers = [p for p in lab.pods() if p.spec.run]
    faults.link_down("node-3")
    expect.matches(lab.pods(), servers, cut_off(node_of(lab), "node-3"), TCP)
    faults.link_up("node-3")
    all_paths_of_a_node_work(lab, "node-3")


def test_a_rate_limit_caps_iperf3_near_the_set_rate(lab, faults, measure):
    client, server = lab.pod("client"), lab.pod("web-2")
    assert client.node.name == "node-1"
    faults.rate_limit("node-1", "20mbit")
    result = lab.iperf(client, server, seconds=2)
    mbit = measure("rate_limited_iperf3_mbit_s", result.bits_per_second / 1e6, "Mbit/s")
    assert 10 <= mbit <= 23, f"20mbit limit, iperf3 measured {mbit:.1f} Mbit/s"


def test_delay_and_loss_need_netem(lab, faults):
    if not features.has("netem"):
        pytest.skip(features.missing_reason("netem"))
    client, server = lab.pod("client"), lab.pod("web-2")
    faults.netem("node-1", delay="40ms")
    ping = client.ping(server, count=3)
    assert ping.rtt_min is not None and ping.rtt_min >= 40


def test_a_killed_pod_keeps_its_ip_and_serves_again_when_reverted(lab, faults):
    web3, client = lab.pod("web-3"), lab.pod("client")
    fault = faults.kill_pod("web-3")
    assert web3.containers() == {"echo-server": False}
    assert "10.244.2." in web3.exec("ip -4 -o addr show dev eth0").stdout
    refused = client.tcp(web3, 9000, timeout=1)
    assert not refused.ok and refused.refused
    faults.revert(fault)
    expect.eventually(
        lambda: _answers(client, web3, "web-3"), within=10, what="web-3 serving again"
    )


def test_the_cli_sets_lists_and_reverts_faults(lab):
    set_ = labkit("fault", "partition", "node-3", "--from", "node-1", "--lab", lab.name)
    assert set_.returncode == 0, set_.stderr
    assert "node-3 cut off from node-1" in set_.stdout
    listed = labkit("fault", "list", "--lab", lab.name)
    assert "node-3 cut off from node-1" in listed.stdout
    assert lab.node("node-1").ping(lab.node("node-3"), count=1).loss == 1.0
    assert lab.node("node-2").ping(lab.node("node-3"), count=1).loss == 0.0
    reverted = labkit("fault", "revert", "--all", "--lab", lab.name)
    assert reverted.returncode == 0 and "reverted" in reverted.stdout
    assert lab.node("node-1").ping(lab.node("node-3"), count=1).loss == 0.0
    unknown = labkit("fault", "stop", "node-9", "--lab", lab.name)
    assert unknown.returncode == 2 and "no node 'node-9'" in unknown.stderr


def test_no_fault_outlived_its_test(lab):
    assert lab.faults.active == []
    for node in lab.nodes():
        rules = node.exec("iptables -t raw -S | grep -c -- '-j DROP' || true").stdout.strip()
        assert rules == "0", f"{node.name} still drops: {rules}"
        assert "tbf" not in node.exec("tc qdisc show").stdout
    expect.reachable(lab.pods(), [p for p in lab.pods() if p.spec.run], TCP)
