"""A lab network's engine arguments, one spec for the Docker, Swarm and fake runtimes."""

from __future__ import annotations

from ipaddress import IPv4Network
from types import SimpleNamespace
from typing import Any

import pytest

from labkit.errors import UsageError
from labkit.runtime import macvlan_parent
from labkit.runtime.docker import DockerRuntime
from labkit.runtime.engine_host import EXIT
from labkit.runtime.fake import FakeRuntime
from labkit.runtime.network_spec import lab_network
from labkit.runtime.swarm import SwarmRuntime
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
    assert kept["driver"] == "bridge"


def test_a_lab_asks_its_runtime_for_each_network_s_driver():
    from labkit import Lab, parse_topology

    runtime = FakeRuntime()
    text = "name: t\nnetworks:\n  u: {driver: macvlan}\n  v: {}\nnodes:\n  a: {networks: [u, v]}\n"
    Lab.up(parse_topology(text), runtime=runtime, name="t")
    assert {name: kept["driver"] for name, kept in runtime.networks.items()} == {
        "t-u": "macvlan",
        "t-v": "bridge",
    }


class MacvlanEngine(Engine):
    """Also records what runs in the engine's host namespace (the parent pair's scripts)."""

    def __init__(self, fail_create: bool = False) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.fail_create = fail_create
        self.client.api = SimpleNamespace(
            create_container=self.create_container,
            create_host_config=lambda **config: config,
            attach=lambda *_, **__: iter([(None, f"{EXIT} 0\n".encode())]),
            start=lambda _: None,
        )

    def create(self, name: str, **arguments: Any) -> None:
        if self.fail_create:
            raise RuntimeError("the engine refused")
        super().create(name, **arguments)

    def create_container(self, image: str, command: list[str], **options: Any) -> dict[str, str]:
        config = options["host_config"]
        assert config["network_mode"] == "host" and config["cap_add"] == ["NET_ADMIN"]
        assert config["auto_remove"]  # a killed caller leaves no container
        assert command[:2] == ["sh", "-c"] and command[-2] == "-ec"  # the exit status told
        self.scripts.append(command[-1])
        return {"Id": f"helper-{len(self.scripts)}"}


def docker_runtime(engine: MacvlanEngine) -> DockerRuntime:
    runtime = DockerRuntime(engine.client)  # type: ignore[arg-type]
    runtime.node_image = lambda: "labkit/node:test"  # type: ignore[method-assign]
    return runtime


def test_a_macvlan_network_sits_on_a_parent_pair_of_its_own_at_the_network_s_mtu():
    engine = MacvlanEngine()
    docker_runtime(engine).create_network("lab", "underlay", SUBNET, mtu=9000, driver="macvlan")
    [(name, args)] = engine.created
    parent = macvlan_parent.parent_name("lab-underlay")
    assert name == "lab-underlay" and args["driver"] == "macvlan" and args["internal"] is True
    assert args["options"] == {"parent": parent, "macvlan_mode": "bridge"}  # MTU: the pair's
    [script] = engine.scripts
    assert f"ip link add {parent} mtu 9000 type veth peer name {parent[:-1]}b mtu 9000" in script
    assert "addrgenmode none" in script and f"alias {macvlan_parent.ALIAS}lab up" in script


def test_a_macvlan_network_the_engine_refuses_takes_its_parent_pair_away():
    engine = MacvlanEngine(fail_create=True)
    with pytest.raises(RuntimeError):
        docker_runtime(engine).create_network("lab", "underlay", SUBNET, driver="macvlan")
    created, removed = engine.scripts
    parent = macvlan_parent.parent_name("lab-underlay")
    assert "ip link add" in created and removed == f"ip link del {parent} 2>/dev/null || true"


def test_parent_names_fit_a_link_name_and_are_told_apart_from_others():
    names = {macvlan_parent.parent_name(f"lab-{i}-underlay") for i in range(100)}
    assert len(names) == 100 and all(len(n) <= 15 and macvlan_parent.is_parent(n) for n in names)
    assert not macvlan_parent.is_parent("eth0") and not macvlan_parent.is_parent("lkm123")


def test_the_sweep_of_one_lab_leaves_the_other_labs_pairs():
    assert '[ "$a" = labkit-lab=one ] || continue' in macvlan_parent.sweep_script("one")
    assert "] || continue; ip link del" not in macvlan_parent.sweep_script(None)


def test_a_multi_host_lab_refuses_a_macvlan_network_it_cannot_span():
    with pytest.raises(UsageError, match="hosts file's `l2:`"):
        SwarmRuntime.create_network(None, "lab", "underlay", SUBNET, driver="macvlan")  # type: ignore[arg-type]
