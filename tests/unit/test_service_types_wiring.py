"""The Service layer's wiring against the fake runtime: a plan per node, what the
LoadBalancer speakers and the health servers are given, stale nftables chains."""

from __future__ import annotations

import json
import time
from ipaddress import IPv4Address

import pytest

from labkit import Lab, layers, parse_topology
from labkit.dataplane import healthcheck, lb_announce
from labkit.dataplane.proxy_modes import mode_of
from labkit.layers.base import BaseLayer
from labkit.layers.proxy_program import program
from labkit.layers.readiness import MARK
from labkit.layers.service_state import stored_plans
from labkit.runtime.base import ExecResult
from labkit.runtime.fake import FakeRuntime

TOPOLOGY = """
name: fake
networks:
  underlay: {subnet: 10.210.0.0/24}
nodes:
  node-1: {}
  node-2: {}
  outside: {roles: [external]}
cluster:
  proxy_mode: nftables
  dns: false
  load_balancer: {addresses: [10.210.0.240/29]}
pods:
  a: {node: node-1, labels: {app: a}, run: [echo-server]}
  b: {node: node-2, labels: {app: b}, run: [echo-server]}
services:
  everywhere:
    type: LoadBalancer
    selector: {app: a}
    ports: [{port: 80, target_port: 8080}]
  local-b:
    type: LoadBalancer
    external_traffic_policy: Local
    selector: {app: b}
    ports: [{port: 80, target_port: 8080}]
"""


pytestmark = pytest.mark.usefixtures("host_has_everything")  # tests/unit/conftest.py


class SpeakingRuntime(FakeRuntime):
    """The fake, with L2 speakers that elect as the real ones do, from their config."""

    def exec(self, container, command, **kwargs):
        text = command if isinstance(command, str) else " ".join(command)
        if lb_announce.SPEAKER_STATUS not in text:
            return super().exec(container, command, **kwargs)
        super().exec(container, "true")  # recorded like any exec
        config = json.loads(self.files[(container, lb_announce.SPEAKER_CONFIG)])
        mine = [
            ip
            for ip, candidates in config["addresses"].items()
            if lb_announce.l2_owner(candidates, IPv4Address(ip)) == config["node"]
        ]
        now = time.time()
        return ExecResult(0, json.dumps({"announced": mine, "time": now}) + f"\n{now}\n", "")


@pytest.fixture
def runtime() -> FakeRuntime:
    # Both pods answer the readiness probe (at up, the end of each node's script).
    return SpeakingRuntime(
        responses={
            "== a netns": f"{MARK}\n== a netns\necho-server up\n",
            "== b netns": f"{MARK}\n== b netns\necho-server up\n",
        }
    )


def file_on(runtime: FakeRuntime, node: str, path: str) -> str:
    return runtime.files[(f"fake-{node}", path)].decode()


def test_every_node_gets_its_own_plan_with_its_own_node_port_address(runtime):
    lab = Lab.up(parse_topology(TOPOLOGY), runtime=runtime)
    plans = stored_plans(lab.cluster)
    assert sorted(plans) == ["node-1", "node-2"]
    for node, plan in plans.items():
        assert plan.node == node and plan.node_ips == (lab.node(node).ip,)
        script = next(
            c for where, c in runtime.execs if where == f"fake-{node}" and "nodeport-ips" in c
        )
        assert f"add element ip kube-proxy nodeport-ips {{ {lab.node(node).ip} }}" in script


def test_speakers_learn_each_address_and_who_may_announce_it(runtime):
    lab = Lab.up(parse_topology(TOPOLOGY), runtime=runtime)
    config = json.loads(file_on(runtime, "node-1", lb_announce.SPEAKER_CONFIG))
    assert config["node"] == "node-1" and config["peers"] == {"node-2": "10.210.0.3"}
    everywhere, local = lab.service("everywhere").lb_ip, lab.service("local-b").lb_ip
    assert config["addresses"] == {str(everywhere): ["node-1", "node-2"], str(local): ["node-2"]}
    assert "class Speaker" in file_on(runtime, "node-2", lb_announce.SPEAKER_PROGRAM)
    for node, status in (("node-1", 503), ("node-2", 200)):
        health = json.loads(file_on(runtime, node, healthcheck.SERVER_CONFIG))
        assert [answer["status"] for answer in health.values()] == [status]


def test_status_shows_each_lb_address_and_its_elected_node(runtime):
    lab = Lab.up(parse_topology(TOPOLOGY), runtime=runtime)
    status = lab.describe()
    shown = {s["name"]: s["load_balancer_ip"] for s in status["services"]}
    assert shown == {n: str(lab.service(n).lb_ip) for n in ("everywhere", "local-b")}
    local = [a for a in status["load_balancer"]["addresses"] if a["service"] == "local-b"]
    assert local[0]["elected"] == "node-2"


def test_nftables_chains_left_flushed_are_deleted_at_the_next_sync_once(runtime):
    lab = Lab.up(parse_topology(TOPOLOGY), runtime=runtime)
    runtime.responses["nft list table"] = "LABKIT-CHAIN service-OLD-gone\n"
    mode = lab.cluster.topology.cluster.proxy_mode
    plan = stored_plans(lab.cluster)["node-1"]
    first = program(lab.cluster, ["node-1"], mode_of(mode), None, plan, {})
    assert first.stale == {"node-1": ["service-OLD-gone"]}
    runtime.reset()
    second = program(lab.cluster, ["node-1"], mode_of(mode), None, plan, {}, stale=first.stale)
    script = next(c for _, c in runtime.execs if "add table" in c)
    assert "delete chain ip kube-proxy service-OLD-gone" in script
    assert second.stale == {"node-1": []}  # deleted now: not again next time


def test_a_lab_from_before_per_node_plans_loses_the_old_table_once(runtime):
    lab = Lab.up(parse_topology(TOPOLOGY), runtime=runtime)
    state = lab.cluster.state["services"]
    state["plan"] = state.pop("plans")["node-1"]  # as labkit before per-node plans saved it
    runtime.reset()
    lab.services.sync()
    assert all(
        "nft delete table ip labkit-proxy" in c for _, c in runtime.execs if "add table" in c
    )
    assert sorted(stored_plans(lab.cluster)) == ["node-1", "node-2"] and "plan" not in state
    runtime.reset()
    lab.services.sync()
    assert not any("labkit-proxy" in c for _, c in runtime.execs)


def test_a_load_balancer_added_later_starts_the_speakers_and_health_servers(runtime):
    topology = parse_topology(TOPOLOGY)
    local = topology.services.pop("local-b")
    topology.services.pop("everywhere")
    topology.services["plain"] = local.model_copy(
        update={"type": "ClusterIP", "external_traffic_policy": "Cluster"}
    )
    lab = Lab.up(topology, runtime=runtime)
    assert ("fake-node-1", lb_announce.SPEAKER_CONFIG) not in runtime.files
    lab.services.add("local-b", local)
    config = json.loads(file_on(runtime, "node-1", lb_announce.SPEAKER_CONFIG))
    assert config["addresses"] == {str(lab.service("local-b").lb_ip): ["node-2"]}
    assert ("fake-node-2", healthcheck.SERVER_CONFIG) in runtime.files


def test_every_wanted_layer_hears_of_a_change_of_services(runtime, monkeypatch):
    heard: list[list[str]] = []

    class Listener(BaseLayer):
        name = "listener"

        def services_changed(self, cluster):
            heard.append(sorted(cluster.topology.services))

    class Unwanted(Listener):
        def wanted(self, cluster):
            return False

    monkeypatch.setattr(layers, "LAYERS", (*layers.LAYERS, Listener(), Unwanted()))
    lab = Lab.up(parse_topology(TOPOLOGY), runtime=runtime)
    assert heard == []  # `up` applies the layers; nothing changed yet
    lab.services.delete("everywhere")
    lab.services.set_terminating(["b"])
    assert heard == [["local-b"], ["local-b"]]
