"""The session's sandbox (tests/multihost/conftest.py), and SwarmRuntime across it."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from labkit import expect
from labkit.runtime.base import LAB_LABEL, container_name
from labkit.runtime.docker import DockerRuntime
from labkit.runtime.sandbox import Sandbox
from labkit.runtime.swarm import SwarmRuntime
from labkit.topology.addressing import UNDERLAY_POOL

LAB = "sb-mh"
PLACEMENT = {"n1": "h1", "n2": "h2"}
GARP = Path(__file__).with_name("garp.py").read_text()


@pytest.fixture(scope="module")
def swarm(sandbox: Sandbox, local: DockerRuntime) -> SwarmRuntime:
    hosts = {host.name: DockerRuntime(sandbox.client(host)) for host in sandbox.hosts}
    return SwarmRuntime(hosts, PLACEMENT, image_source=local)


def free_subnet(taken: list[IPv4Network]) -> IPv4Network:
    return next(
        s for s in UNDERLAY_POOL.subnets(new_prefix=24) if not any(s.overlaps(t) for t in taken)
    )


@pytest.fixture(scope="module")
def lab(swarm: SwarmRuntime) -> Iterator[dict[str, IPv4Address]]:
    subnet = free_subnet(swarm.taken_subnets())
    addresses = {"n1": subnet.network_address + 10, "n2": subnet.network_address + 11}
    image = swarm.node_image()
    swarm.create_network(LAB, "underlay", subnet)
    for node, address in addresses.items():
        swarm.create_node(LAB, node, image, {"underlay": address})

    # A swarm that just formed learns where a new endpoint lives by gossip: a moment.
    def carried() -> None:
        assert run(swarm, "n1", f"ping -c1 -W1 {addresses['n2']}") == 0

    expect.eventually(carried, within=30, what="the overlay to carry n1 -> n2")
    yield addresses
    swarm.cleanup(LAB)


def run(swarm: SwarmRuntime, node: str, command: str) -> int:
    return swarm.exec(container_name(LAB, node), command, check=False, timeout=15).exit_code


def test_the_sandbox_is_one_swarm(swarm: SwarmRuntime, sandbox: Sandbox):
    assert swarm.swarm_problems() == []
    manager = swarm.hosts[swarm.manager()].client
    hostnames = sorted(node.attrs["Description"]["Hostname"] for node in manager.nodes.list())
    assert hostnames == [host.name for host in sandbox.hosts]
    assert "h1:" in sandbox.inventory.read_text()


def test_nodes_run_on_their_hosts_with_static_ips(swarm: SwarmRuntime, lab: dict[str, IPv4Address]):
    for node, host in PLACEMENT.items():
        assert swarm.host_of(container_name(LAB, node)) == host
        shown = swarm.exec(container_name(LAB, node), "ip -4 -o addr show eth0").stdout
        assert f"{lab[node]}/" in shown
    assert set(swarm.labelled(LAB)) >= {container_name(LAB, n) for n in PLACEMENT}


def test_unicast_crosses_hosts(swarm: SwarmRuntime, lab: dict[str, IPv4Address]):
    assert run(swarm, "n1", f"ping -c2 -W1 {lab['n2']}") == 0


def test_overlay_mtu_is_measured(swarm: SwarmRuntime, lab: dict[str, IPv4Address], record_property):
    mtu = int(swarm.exec(container_name(LAB, "n1"), "cat /sys/class/net/eth0/mtu").stdout)
    record_property("overlay_mtu", mtu)
    assert run(swarm, "n1", f"ping -c1 -W1 -M do -s {mtu - 28} {lab['n2']}") == 0
    assert run(swarm, "n1", f"ping -c1 -W1 -M do -s {mtu - 27} {lab['n2']}") != 0


def test_vxlan_inside_nodes_crosses_hosts(swarm: SwarmRuntime, lab: dict[str, IPv4Address]):
    inner = {"n1": "10.199.0.1", "n2": "10.199.0.2"}
    for node, peer in (("n1", "n2"), ("n2", "n1")):
        swarm.exec(
            container_name(LAB, node),
            f"ip link add vxt type vxlan id 77 remote {lab[peer]} dstport 4799 dev eth0"
            f" && ip addr add {inner[node]}/24 dev vxt && ip link set vxt up",
        )
    assert run(swarm, "n1", f"ping -c5 -W1 {inner['n2']}") == 0  # the first may go to ARP


def test_a_secondary_ip_does_not_cross_the_overlay(
    swarm: SwarmRuntime, lab: dict[str, IPv4Address]
):
    """Why VRRP and floating IPs need true L2: the overlay answers only the IPs it assigned."""
    vip = lab["n1"] + 90
    swarm.put_file(container_name(LAB, "n2"), "/tmp/garp.py", GARP)
    swarm.exec(
        container_name(LAB, "n2"),
        f"ip addr add {vip}/24 dev eth0 && python3 /tmp/garp.py eth0 {vip}",
    )
    assert run(swarm, "n1", f"ping -c1 -W1 {vip}") != 0


def test_macvlan_on_the_sandbox_segment_gives_true_l2(
    swarm: SwarmRuntime, lab: dict[str, IPv4Address]
):
    """A macvlan network per host on the hosts' shared eth0: a VIP + gratuitous ARP crosses."""
    subnet = free_subnet([*swarm.taken_subnets(), IPv4Network(f"{lab['n1']}/24", strict=False)])
    for host in PLACEMENT.values():
        swarm.hosts[host].client.networks.create(
            f"{LAB}-l2", driver="macvlan", options={"parent": "eth0"},
            ipam={"Driver": "default", "Config": [{"Subnet": str(subnet)}]},
            labels={LAB_LABEL: LAB},
        )  # fmt: skip
    for offset, node in enumerate(PLACEMENT, start=10):
        api = swarm.hosts[PLACEMENT[node]].client.api
        api.connect_container_to_network(
            container_name(LAB, node),
            f"{LAB}-l2",
            ipv4_address=str(subnet.network_address + offset),
        )
    vip = subnet.network_address + 100
    swarm.put_file(container_name(LAB, "n2"), "/tmp/garp.py", GARP)
    swarm.exec(
        container_name(LAB, "n2"),
        f"ip addr add {vip}/24 dev eth1 && python3 /tmp/garp.py eth1 {vip}",
    )
    assert run(swarm, "n1", f"ping -c1 -W1 {vip}") == 0


def test_the_hosts_share_an_l2_segment(swarm: SwarmRuntime):
    shared, reason = swarm.shared_l2()
    assert shared, reason


def test_down_leaves_nothing_on_any_host(swarm: SwarmRuntime, lab: dict[str, IPv4Address]):
    result = swarm.cleanup(LAB)
    assert result.unreachable == {}
    assert swarm.labelled(LAB) == []
