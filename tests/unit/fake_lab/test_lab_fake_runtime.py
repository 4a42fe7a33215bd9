"""The lab's lifecycle against the fake runtime: the exact engine calls, rollbacks, faults."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from fake_topologies import TWO_NODES, cni_add, echoes

from labkit import Lab, parse_topology
from labkit import lab as lab_module
from labkit.core import state as state_store
from labkit.dataplane.vxlan import underlay_device
from labkit.errors import LabkitError, UsageError
from labkit.layers.readiness import MARK
from labkit.runtime.base import ExecError
from labkit.topology.loader import load_topology as load
from labkit.topology.model import slug

TOPOLOGY = TWO_NODES


@pytest.fixture
def topology_text() -> str:
    return TOPOLOGY


def test_up_creates_the_network_then_each_node_then_runs_its_script(runtime):
    lab = Lab.up(parse_topology(TOPOLOGY), runtime=runtime)
    names = runtime.call_names()
    assert runtime.calls[0] == ("create_network", "fake", "underlay", "10.210.0.0/24")
    nodes = sorted((call for call in runtime.calls if call[0] == "create_node"), key=str)
    assert nodes == [
        ("create_node", "fake", "node-1", "labkit-node:fake", {"underlay": "10.210.0.2"}),
        ("create_node", "fake", "node-2", "labkit-node:fake", {"underlay": "10.210.0.3"}),
    ]
    for node in ("node-1", "node-2"):  # a node's script runs once it runs, not after the others
        created = next(
            i for i, c in enumerate(runtime.calls) if c[:3] == ("create_node", "fake", node)
        )
        script = next(i for i, c in enumerate(runtime.calls) if c[:2] == ("exec", f"fake-{node}"))
        assert created < script
    # One script per node (vxlan has no convergence wait): its pods are in it.
    assert names.count("exec") == 2
    assert "labkit-cni add-all" in runtime.execs_on("fake-node-1")[0]
    assert cni_add("a") in runtime.execs_on("fake-node-1")[0]
    assert cni_add("b") in runtime.execs_on("fake-node-2")[0]
    assert lab.pod("a").ip in IPv4Network(str(lab.addresses.pod_subnets["node-1"]))
    assert Lab.attach("fake", runtime).addresses == lab.addresses  # the state was saved


def test_running_loads_a_topology_file_once_and_keeps_where_it_came_from(
    runtime, tmp_path, monkeypatch
):
    path = tmp_path / "fake.yaml"
    path.write_text(TOPOLOGY)
    loads: list[str] = []
    monkeypatch.setattr(lab_module, "load_topology", lambda ref: loads.append(ref) or load(ref))
    with Lab.running(str(path), runtime=runtime) as lab:
        assert lab.source == Lab.attach(lab.name, runtime).source == str(path)
    assert loads == [str(path)]


def test_up_refuses_a_running_lab_of_the_same_name_before_creating_anything(lab, runtime):
    with pytest.raises(UsageError, match="already up"):
        Lab.up(parse_topology(TOPOLOGY), runtime=runtime)
    assert runtime.calls == []


def test_a_failed_up_removes_what_it_made(runtime):
    runtime.fail_exec(cni_add("b"), on="fake-node-2")
    with pytest.raises(ExecError):
        Lab.up(parse_topology(TOPOLOGY), runtime=runtime)
    assert runtime.calls[-1] == ("remove_lab", "fake")
    assert runtime.labelled("fake") == []


def test_an_interrupted_up_removes_what_it_made(runtime, tmp_path):
    runtime.fail_exec(cni_add("a"), error=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        Lab.up(parse_topology(TOPOLOGY), runtime=runtime)
    assert ("remove_lab", "fake") in runtime.calls
    assert runtime.containers == {} and runtime.networks == {}
    assert (
        list(tmp_path.glob("*.json")) == []
    )  # no state left for `attach` to trip over (locks/ stays)


def test_add_pod_runs_the_pod_script_on_its_node(lab, runtime):
    pod = lab.add_pod("c", {"node": "node-2"})
    assert runtime.calls == [("exec", "fake-node-2", runtime.execs[-1][1])]
    assert cni_add("c") in runtime.execs[-1][1]
    assert pod.ip == IPv4Address("10.244.1.3")  # after b's .2


def test_add_pod_without_a_node_goes_to_the_least_loaded_running_node(lab, runtime):
    assert lab.add_pod("c", {}).node.name == "node-1"  # a tie of one pod each: the first
    assert lab.add_pod("d", {"labels": {"app": "x"}}).node.name == "node-2"
    lab.faults.stop_node("node-1")
    assert lab.add_pod("e", {}).node.name == "node-2"  # a stopped node takes none
    assert Lab.attach("fake", runtime).topology.pods["c"].node == "node-1"  # saved where it went


def test_a_failed_add_pod_is_rolled_back(lab, runtime):
    runtime.fail_exec(cni_add("c"))
    with pytest.raises(ExecError):
        lab.add_pod("c", {"node": "node-2"})
    assert [call[1] for call in runtime.calls] == ["fake-node-2", "fake-node-2"]
    assert "labkit-cni del c" in runtime.execs[-1][1]  # the half-made pod is taken apart
    assert "c" not in lab.topology.pods and "c" not in lab.addresses.pod_ips
    assert "c" not in Lab.attach("fake", runtime).topology.pods
    assert lab.add_pod("c", {"node": "node-2"}).ip == IPv4Address("10.244.1.3")  # the IP is free


def test_move_pod_deletes_then_adds_and_keeps_the_old_ip_for_a_return(lab, runtime):
    old_ip = lab.pod("a").ip
    moved = lab.move_pod("a", "node-2")
    assert [call[1] for call in runtime.calls] == ["fake-node-1", "fake-node-2"]
    assert "ip netns del a" in runtime.execs[-2][1]
    assert cni_add("a") in runtime.execs[-1][1]
    assert moved.node.name == "node-2" and moved.ip in lab.addresses.pod_subnets["node-2"]
    back = lab.move_pod("a", "node-1")
    assert back.ip == old_ip  # sticky


def test_a_failed_move_puts_the_pod_back(lab, runtime):
    old_ip = lab.pod("a").ip
    runtime.fail_exec(cni_add("a"), on="fake-node-2")
    with pytest.raises(ExecError):
        lab.move_pod("a", "node-2")
    assert [call[1] for call in runtime.calls] == [
        "fake-node-1",
        "fake-node-2",
        "fake-node-2",
        "fake-node-1",
    ]
    assert cni_add("a") in runtime.execs[-1][1]  # recreated where it was
    assert lab.pod("a").node.name == "node-1" and lab.pod("a").ip == old_ip


def test_move_to_an_unknown_node_changes_nothing(lab, runtime):
    with pytest.raises(UsageError, match="no node 'node-9'"):
        lab.move_pod("a", "node-9")
    assert runtime.calls == []


def test_a_stopped_node_comes_back_with_its_script(lab, runtime):
    fault = lab.faults.stop_node("node-2")
    assert runtime.calls == [("stop_node", "fake-node-2")]
    assert lab.cluster.stopped_nodes() == {"node-2"}
    with pytest.raises(UsageError, match="stopped already"):
        lab.faults.stop_node("node-2")
    with pytest.raises(UsageError, match="is stopped"):
        lab.move_pod("a", "node-2")
    runtime.reset()
    lab.faults.revert(fault)
    assert runtime.calls[0] == ("start_node", "fake-node-2")
    rebuilt = runtime.execs_on("fake-node-2")
    assert rebuilt[0] == "true"  # waited for it to answer
    assert cni_add("b") in rebuilt[1]  # then its whole script again
    assert lab.cluster.stopped_nodes() == set() and lab.faults.active == []


def test_faults_revert_newest_first_and_a_failed_revert_keeps_the_fault(lab, runtime):
    rate = lab.faults.rate_limit("node-1", "20mbit")
    down = lab.faults.link_down("node-2")
    (shaped,) = runtime.execs_on("fake-node-1")
    assert shaped.startswith(f"tc qdisc replace dev {underlay_device(IPv4Address('10.210.0.2'))} ")
    assert shaped.endswith(" root tbf rate 20000000bit burst 50000 latency 50ms")
    runtime.fail_exec("ip link set dev", on="fake-node-2", error=LabkitError("engine gone"))
    with pytest.raises(LabkitError):
        lab.faults.revert_all()
    assert [f.id for f in lab.faults.active] == [rate.id, down.id]
    runtime.reset()
    assert [f.id for f in lab.faults.revert_all()] == [down.id, rate.id]
    assert runtime.execs[-1][0] == "fake-node-1"
    assert runtime.execs[-1][1].startswith(
        f"tc qdisc del dev {underlay_device(IPv4Address('10.210.0.2'))} "
    )
    assert lab.faults.active == []


def test_lab_pods_are_the_workloads_unless_labels_are_asked_for(lab):
    lab.add_pod("addon", {"node": "node-1", "namespace": "kube-system", "labels": {"app": "x"}})
    assert [p.name for p in lab.pods()] == ["a", "b"]
    assert [p.name for p in lab.node("node-1").pods()] == ["a"]
    assert [p.name for p in lab.pods(app="x")] == ["addon"]
    assert [p.name for p in lab.cluster.pods()] == ["a", "b", "addon"]
    assert [p.name for p in lab.cluster.workloads()] == ["a", "b"]


WITH_A_SERVICE = (
    TWO_NODES.replace(
        "a: {node: node-1, run: [echo-server]}",
        "a: {node: node-1, run: [echo-server], labels: {app: a}}",
    )
    + "services:\n  a: {selector: {app: a}, ports: [{port: 80, target_port: 8080}]}\n"
)


ALIVE = "== a netns\necho-server up\n== b netns\n"
DNS_ALIVE = "== kube-dns-1 netns\nwhile up\n== kube-dns-2 netns\nwhile up\n"


def test_each_nodes_script_programs_services_and_dns_then_probes_its_pods(runtime):
    runtime.responses["labkit-part services"] = lambda s: echoes(s, {MARK: ALIVE + DNS_ALIVE})
    lab = Lab.up(parse_topology(WITH_A_SERVICE), runtime=runtime)
    built = runtime.execs_on("fake-node-1")[0]
    assert built.index("/etc/netns/a/resolv.conf") < built.index("LABKIT_POD=a")
    assert built.index("LABKIT_POD=a") < built.index("KUBE-SERVICES") < built.index(MARK)
    # The DNS pods start with their records there; the script waits for them to answer.
    assert built.index("dnsmasq.conf.new") < built.index("LABKIT_POD=kube-dns-1")
    assert built.index(MARK) < built.index("dig +short")
    # The first apply of both layers took the scripts' answers: no exec round of their own.
    assert [len(runtime.execs_on(f"fake-node-{i}")) for i in (1, 2)] == [1, 1]
    assert lab.service("a").endpoints() and lab.cluster.built is None
    assert lab.describe()["cluster_dns"]["records"] > 0


def test_a_pod_found_not_ready_by_its_script_is_synced_again_at_up(runtime):
    runtime.responses["labkit-part services"] = lambda s: echoes(s, {MARK: DNS_ALIVE})
    lab = Lab.up(parse_topology(WITH_A_SERVICE), runtime=runtime)
    assert not lab.service("a").endpoints()  # probed again: still not ready
    assert len(runtime.execs_on("fake-node-1")) > 1


def test_dns_pods_that_never_answered_in_the_scripts_are_waited_for_at_apply(runtime):
    runtime.responses["labkit-part services"] = lambda s: echoes(
        s.replace("echo labkit-dns-served", "echo not-served"), {MARK: ALIVE + DNS_ALIVE}
    )
    runtime.responses["dig +short"] = "10.96.0.10"  # answering now
    Lab.up(parse_topology(WITH_A_SERVICE), runtime=runtime)
    assert any("dig +short" in c and "until" not in c for _, c in runtime.execs)


def test_without_services_no_node_script_probes_readiness(runtime):
    Lab.up(parse_topology(TWO_NODES), runtime=runtime)
    assert not [c for _, c in runtime.execs if MARK in c]  # no one would take the answer


def _where(handle) -> list[str | None]:
    """(container, netns) of what `endpoint` resolved: what a run of `exec` there uses."""
    if hasattr(handle, "spec"):  # a pod
        return [handle.node.container, None if handle.spec.host_network else slug(handle.name)]
    return [handle.container, None]


def test_the_saved_exec_targets_are_where_the_loaded_lab_finds_each_name(lab, runtime):
    lab.add_pod("c", {"node": "node-2", "namespace": "shop"})
    lab.add_pod("n", {"node": "node-1", "host_network": True})
    lab.move_pod("a", "node-2")
    saved = state_store.extras("fake")["exec_targets"]
    assert saved["a"] == ["fake-node-2", "a"] and saved["n"] == ["fake-node-1", None]
    assert saved["shop/c"] == saved["c"] == ["fake-node-2", "c"]
    attached = Lab.attach("fake", runtime).cluster
    for name, where in saved.items():
        assert _where(attached.endpoint(name)) == where, name
    assert set(saved) == {"node-1", "node-2", "a", "b", "c", "n", "default/a", "default/b",
                          "default/n", "shop/c"}  # fmt: skip
    lab.delete_pod("shop/c")  # NS/NAME of a pod keyed by its name alone
    assert "c" not in state_store.extras("fake")["exec_targets"]
