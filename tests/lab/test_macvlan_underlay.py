"""A macvlan underlay (`networks.X.driver: macvlan`): the nodes sit on one segment
with no host bridge between them, on a veth pair of the lab's own on the engine's
host that carries no address and leaves with the lab."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labkit import Lab, expect, parse_topology
from labkit.dataplane import backends
from labkit.errors import LabkitError
from labkit.runtime.base import LAB_LABEL, network_name
from labkit.runtime.docker import DockerRuntime
from labkit.runtime.macvlan_parent import ALIAS, PREFIX, is_parent, run_script

# The parent pair lives in the engine's host namespace: this host's, unless DOCKER_HOST
# names another machine.
pytestmark = pytest.mark.skipif(
    os.environ.get("DOCKER_HOST", "unix://").split(":", 1)[0] not in ("unix", ""),
    reason="the engine runs on another machine: its host links are not visible here",
)


def parent_of(runtime: DockerRuntime, lab: str, network: str) -> str:
    found = runtime.client.api.inspect_network(network_name(lab, network))
    return str(found["Options"]["parent"])


def host_link(name: str) -> Path:
    return Path("/sys/class/net") / name


@pytest.mark.topology("macvlan-underlay")
class TestMacvlanUnderlay:
    def test_every_node_sits_on_the_segment_as_a_macvlan(self, lab):
        for node in ("node-1", "node-2"):
            assert "macvlan mode bridge" in lab.node(node).exec("ip -d link show eth0").stdout

    def test_pods_reach_each_other_across_nodes_at_the_full_pod_mtu(self, lab):
        client, web = lab.pod("client-1"), lab.pod("web-2")
        assert client.http(web).pod == "web-2"
        largest = backends.pod_mtu(lab.topology) - 28  # IPv4 20 + ICMP 8
        assert client.ping(web, size=largest, dont_fragment=True, count=2).loss == 0
        assert not client.ping(web, size=largest + 1, dont_fragment=True, count=1).ok

    def test_a_service_spreads_over_both_nodes(self, lab):
        vip = lab.service("web").vip
        answers = {lab.pod("client-1").http(vip, 80).pod for _ in range(30)}
        assert answers == {"web-1", "web-2"}

    def test_the_parent_is_the_lab_s_own_and_the_host_holds_no_address_on_it(self, lab):
        parent = parent_of(lab.runtime, lab.name, "underlay")
        assert is_parent(parent)
        for end in (parent, parent[:-1] + "b"):
            assert (host_link(end) / "ifalias").read_text().strip() == ALIAS + lab.name
            assert (host_link(end) / "operstate").read_text().strip() == "up"
            shown = os.popen(f"ip -o addr show dev {end}").read()
            assert shown == "", f"the host has an address on {end}: {shown}"


def test_down_takes_the_parent_pair_with_the_network():
    runtime = DockerRuntime()
    topology = parse_topology(
        "name: macvlan-down\nnetworks:\n  u: {driver: macvlan, mtu: 9000}\n"
        "nodes:\n  node-1: {networks: [u]}\n  node-2: {networks: [u]}\n"
    )
    lab = Lab.up(topology, runtime=runtime)
    try:
        parent = parent_of(runtime, lab.name, "u")
        assert (host_link(parent) / "mtu").read_text().strip() == "9000"
        assert "mtu 9000 " in lab.node("node-1").exec("ip link show eth0").stdout
    finally:
        lab.down()
    assert not host_link(parent).exists()
    assert not host_link(parent[:-1] + "b").exists()


def lab_pairs(lab: str) -> list[str]:
    """The host's parent ends that name `lab` in their alias."""
    return sorted(
        link.name
        for link in Path("/sys/class/net").iterdir()
        if link.name.startswith(PREFIX) and _alias(link) == ALIAS + lab
    )


def _alias(link: Path) -> str:
    try:
        return (link / "ifalias").read_text().strip()
    except OSError:  # gone meanwhile
        return ""


@pytest.mark.parametrize("moment", ["pair", "network"])
def test_a_run_killed_after_making_its_pair_leaves_nothing_after_the_next_up(tmp_path, moment):
    """kill -9 of `labkit up` once its parent pair exists (its network not yet, or made):
    the next `up` of that name reclaims the lab, pair included, and its `down` leaves none."""
    name = f"macvlan-kill-{moment}"
    lab_name = os.environ.get("LABKIT_NAME_PREFIX", "") + name
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nnetworks:\n  u: {{driver: macvlan}}\n"
        "nodes:\n  node-1: {networks: [u]}\n  node-2: {networks: [u]}\n"
    )
    runtime = DockerRuntime()
    child = subprocess.Popen(
        [sys.executable, "-m", "labkit", "up", str(path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    network = network_name(lab_name, "u")
    try:
        deadline = time.monotonic() + 60
        while not (lab_pairs(lab_name) if moment == "pair" else _network_exists(runtime, network)):
            assert child.poll() is None and time.monotonic() < deadline, "never got there"
            time.sleep(0.01)
    finally:
        child.kill()
        child.wait(10)
    assert lab_pairs(lab_name), "the killed run left no pair: nothing was tested"
    lab = Lab.up(str(path), runtime=runtime)
    try:
        assert len(lab_pairs(lab_name)) == 2  # its own pair, made afresh: one, not two
    finally:
        lab.down()
    assert lab_pairs(lab_name) == []
    assert runtime.labelled(lab_name) == []


def _network_exists(runtime: DockerRuntime, network: str) -> bool:
    return bool(runtime.client.api.networks(names=[network]))


def test_a_failed_script_on_the_engines_host_says_why_and_leaves_no_container():
    runtime = DockerRuntime()
    before = runtime.client.api.containers(all=True, filters={"label": f"{LAB_LABEL}=probe"})
    with pytest.raises(LabkitError, match='Cannot find device "lkm0000000000a"'):
        run_script(runtime.client, runtime.node_image(), "ip link del lkm0000000000a")

    def removed() -> None:  # by the engine, at its exit
        found = runtime.client.api.containers(all=True, filters={"label": f"{LAB_LABEL}=probe"})
        assert len(found) <= len(before), found

    expect.eventually(removed, within=10, what="the helper container's removal")
