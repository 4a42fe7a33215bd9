"""A lab network's engine arguments, one spec for the Docker, Swarm and fake runtimes."""

from __future__ import annotations

from ipaddress import IPv4Network
from types import SimpleNamespace
from typing import Any

from labkit.runtime.fake import FakeRuntime
from labkit.runtime.network_spec import lab_network
from labkit.runtime.swarm_networks import create_macvlan, create_overlay

SUBNET = IPv4Network("10.210.0.0/24")


class Engine:
    """Enough of a DockerRuntime for the network calls: it records them."""

    def __init__(self) -> None:
        self.created: list[tuple[str, dict[str, Any]]] = []
        self.client = SimpleNamespace(networks=SimpleNamespace(create=self.create))

    def create(self, name: str, **arguments: Any) -> None:
        self.created.append((name, arguments))


def test_a_lab_network_is_internal_labelled_and_carries_its_subnet_and_mtu():
    spec = lab_network("lab", "underlay", SUBNET, {"owner": "me"}, mtu=9000)
    args = spec.create_args()
    assert spec.name == "lab-underlay" and args["internal"] is True
    assert args["labels"] == {"labkit.lab": "lab", "labkit.network": "underlay", "owner": "me"}
    assert args["ipam"]["Config"][0]["Subnet"] == "10.210.0.0/24"
    assert args["options"] == {"com.docker.network.driver.mtu": "9000"}


def test_without_an_mtu_the_engine_s_default_stays():
    assert lab_network("lab", "underlay", SUBNET).create_args()["options"] is None


def test_the_overlay_leaves_the_engine_the_top_of_the_subnet():
    engine = Engine()
    create_overlay(engine, lab_network("lab", "underlay", SUBNET))  # type: ignore[arg-type]
    [(name, args)] = engine.created
    assert name == "lab-underlay" and args["driver"] == "overlay" and args["attachable"]
    assert args["internal"] is True
    assert args["ipam"]["Config"][0]["IPRange"] == "10.210.0.224/27"


def test_the_macvlan_has_its_parent_and_is_not_internal_on_every_host():
    hosts = {"a": Engine(), "b": Engine()}
    create_macvlan(hosts, lab_network("lab", "l2", SUBNET), "eth1")  # type: ignore[arg-type]
    for engine in hosts.values():
        [(name, args)] = engine.created
        assert name == "lab-l2" and args["driver"] == "macvlan" and args["internal"] is False
        assert args["options"] == {"parent": "eth1"}
        assert args["labels"]["labkit.lab"] == "lab"


def test_the_fake_keeps_the_same_spec():
    runtime = FakeRuntime()
    runtime.create_network("lab", "underlay", SUBNET, mtu=1400)
    kept = runtime.networks["lab-underlay"]
    assert kept["spec"] == lab_network("lab", "underlay", SUBNET, mtu=1400)
    assert runtime.lab_labels("lab")["labkit.network"] == "underlay"
