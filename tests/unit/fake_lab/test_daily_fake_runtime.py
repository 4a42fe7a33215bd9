"""Stop/start, reclaim, impairments and capture against the fake runtime and as pure rules."""

from __future__ import annotations

import io
import os
import socket

import pytest
from fake_topologies import IMPAIRED

from labkit import Lab, parse_topology
from labkit.core import owner, state
from labkit.core.capture import Capture
from labkit.dataplane.capture import capture_command, stop_command
from labkit.errors import FeatureMissing, UsageError

TOPOLOGY = IMPAIRED


@pytest.fixture
def topology_text() -> str:
    return TOPOLOGY


# -- impairments -----------------------------------------------------------------------


def test_up_sets_the_files_rate_on_the_impaired_link_only(runtime):
    Lab.up(parse_topology(TOPOLOGY), runtime=runtime)
    shaped = [c for c in runtime.execs_on("fake-node-1") if "tc qdisc replace" in c]
    assert (
        len(shaped) == 1
        and "show to 10.210.0.2/32" in shaped[0]
        and "tbf rate 20000000bit" in shaped[0]
    )
    assert not [c for c in runtime.execs_on("fake-node-2") if "tc qdisc" in c]


def test_a_topology_asking_for_netem_is_refused_before_anything_is_created(
    runtime, host_has_everything
):
    host_has_everything["netem"] = {"ok": False, "detail": "the kernel lacks it"}
    delayed = TOPOLOGY.replace("rate: 20mbit", "delay: 20ms")
    with pytest.raises(FeatureMissing, match=r"nodes\.node-1\.impair\.underlay\.delay"):
        Lab.up(parse_topology(delayed), runtime=runtime)
    assert not [c for c in runtime.calls if c[0] in ("create_network", "create_node")]


def test_a_rate_fault_replaces_the_links_qdisc_and_its_revert_restores_the_files(lab, runtime):
    fault = lab.faults.rate_limit("node-1", "5mbit")
    assert "tbf rate 5000000bit" in runtime.execs_on("fake-node-1")[-1]
    runtime.reset()
    lab.faults.revert(fault)
    assert "tc qdisc replace" in runtime.execs_on("fake-node-1")[-1]
    assert "tbf rate 20000000bit" in runtime.execs_on("fake-node-1")[-1]
    fault = lab.faults.rate_limit("node-2", "5mbit")
    runtime.reset()
    lab.faults.revert(fault)
    assert "tc qdisc del" in runtime.execs_on("fake-node-2")[-1]  # no impairment: none


def test_status_shows_the_impairments(lab):
    assert lab.describe()["impairments"] == [
        {"node": "node-1", "network": "underlay", "impair": "20mbit",
         "qdisc": "tbf rate 20000000bit burst 50000 latency 50ms"},
    ]  # fmt: skip


def test_layers_reapplied_elsewhere_keep_a_faults_qdisc(lab, runtime):
    lab.faults.rate_limit("node-1", "5mbit")
    runtime.reset()
    lab.faults.restart_node("node-2")  # every layer re-applies
    assert not [c for c in runtime.execs_on("fake-node-1") if "tc qdisc replace" in c]


# -- stop and start ----------------------------------------------------------------------


def test_stop_stops_every_node_and_start_reruns_scripts_layers_and_faults(lab, runtime):
    lab.faults.rate_limit("node-2", "5mbit")
    assert sorted(lab.stop()) == ["node-1", "node-2"]
    assert not any(runtime.is_running(n.container) for n in lab.nodes())
    assert state.flag(lab.name, "stopped")
    runtime.reset()
    assert sorted(lab.start()) == ["node-1", "node-2"]
    assert not state.flag(lab.name, "stopped")
    for node in ("fake-node-1", "fake-node-2"):
        commands = runtime.execs_on(node)
        script = next(i for i, c in enumerate(commands) if "labkit-cni add-all" in c)
        shaped = max(i for i, c in enumerate(commands) if "tc qdisc replace" in c)
        assert script < shaped  # the node's script first, then what goes on top
    assert (
        "tbf rate 5000000bit" in [c for c in runtime.execs_on("fake-node-2") if "tc qdisc" in c][-1]
    )
    assert (
        "tbf rate 20000000bit"
        in [c for c in runtime.execs_on("fake-node-1") if "tc qdisc" in c][-1]
    )


def test_start_leaves_a_node_a_fault_stopped_alone(lab, runtime):
    lab.faults.stop_node("node-2")
    lab.stop()
    assert lab.start() == ["node-1"]
    assert not runtime.is_running("fake-node-2")


def test_a_stopped_lab_is_never_reclaimed_by_up(lab, runtime):
    lab.stop()
    with pytest.raises(UsageError, match=r"is stopped .*labkit start fake"):
        Lab.up(parse_topology(TOPOLOGY), runtime=runtime)
    assert "remove_lab" not in runtime.call_names()


# -- who may reclaim a lab (pure) ---------------------------------------------------------


def mine(**extra: str) -> dict[str, str]:
    return owner.owner_labels(keep=False) | extra


def gone(**extra: str) -> dict[str, str]:
    return mine(**extra) | {owner.START: "0"}  # this pid, but started at another time: gone


def test_reclaim_rules():
    here = {"running": True, "building": False}
    assert owner.reclaim_reason(mine(), **here) is None  # in use
    assert "is gone" in str(owner.reclaim_reason(gone(), **here))
    assert owner.reclaim_reason(mine(), running=False, building=False) == "nothing of it runs"
    kept = {owner.KEEP: "1"}
    assert owner.reclaim_reason(gone(**kept), **here) is None  # kept, complete
    assert (
        owner.reclaim_reason(gone(**kept), running=False, building=False) is None
    )  # engine restarted
    assert "died while bringing it up" in str(
        owner.reclaim_reason(gone(**kept), running=True, building=True)
    )
    assert owner.reclaim_reason(mine(), running=False, building=False, stopped=True) is None
    elsewhere = gone() | {owner.HOST: socket.gethostname() + "-other"}
    assert owner.reclaim_reason(elsewhere, running=False, building=True) == "nothing of it runs"
    assert owner.reclaim_reason(elsewhere, **here) is None  # another host's: not judged here


def test_the_lock_is_reentrant_in_one_thread():
    with state.lock("x"), state.lock("x"):
        assert (state.state_dir() / "locks" / "x.lock").exists()


# -- capture -------------------------------------------------------------------------------


def test_capture_commands():
    command = capture_command("c1", "web", None, ["tcp", "port", "80"])
    assert command.endswith(
        "exec ip netns exec web tcpdump -i eth0 -U --immediate-mode -w - tcp port 80"
    )
    assert "echo $$ > /run/labkit-capture/c1.pid" in command
    assert "tcpdump -i any " in capture_command("c1", None, None, [])
    assert "kill -INT $(cat /run/labkit-capture/c1.pid" in stop_command("c1")


def test_a_capture_writes_the_stream_and_stops_tcpdump(lab, runtime):
    runtime.responses["tcpdump"] = "PCAP"
    sink = io.BytesIO()
    one = Capture(lab.pod("a"), sink)
    one._thread.start()
    one.wait()
    one.stop()
    assert sink.getvalue() == b"PCAP"
    assert any("kill -INT" in c for c in runtime.execs_on("fake-node-1"))
    assert os.path.basename(one.command.split("/run/labkit-capture/")[1].split(".pid")[0]) == one.id


PODS_AND_A_SERVICE = """\
name: t
nodes:
  node-1: {}
cluster: {cni_plugin: CNI, dns: false}
pods:
  web: {node: node-1, labels: {app: web}, run: [echo-server]}
services:
  web: {selector: {app: web}, ports: [{port: 80, target_port: 8080}]}
policies:
  deny: {pod_selector: {match_labels: {app: web}}, policy_types: [Ingress]}
"""


def test_without_bridge_netfilter_only_ptp_pods_run_services_and_policies(
    runtime, host_has_everything
):
    host_has_everything["br_netfilter"] = {"ok": False, "detail": "not loaded"}
    with pytest.raises(FeatureMissing, match="br_netfilter"):
        Lab.up(parse_topology(PODS_AND_A_SERVICE.replace("CNI", "bridge")), runtime=runtime)
    assert not [c for c in runtime.calls if c[0] in ("create_network", "create_node")]
    lab = Lab.up(parse_topology(PODS_AND_A_SERVICE.replace("CNI", "ptp")), runtime=runtime)
    script = "\n".join(runtime.execs_on("t-node-1"))
    assert "bridge-nf-call-iptables" not in script and '"type": "ptp"' in script
    lab.down()
