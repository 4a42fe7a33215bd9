"""Bringing labs up and down: cleanup, isolation between labs, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import Lab, expect, parse_topology
from labkit.dataplane import backends
from labkit.errors import TopologyError
from labkit.runtime.base import ExecError, ExecResult, container_name
from labkit.runtime.docker import DockerRuntime, engine_available

PREFIX = os.environ.get("LABKIT_NAME_PREFIX", "")

TINY = """
name: {name}
nodes:
  node-1: {{}}
  node-2: {{}}
pods:
  p-1: {{node: node-1, run: [echo-server]}}
  p-2: {{node: node-2}}
"""


@pytest.fixture(scope="module")
def runtime():
    available, reason = engine_available()
    if not available:
        if os.environ.get("LABKIT_REQUIRE_DOCKER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return DockerRuntime()


def labelled(runtime: DockerRuntime, lab: str) -> list[str]:
    return runtime.labelled(lab)


def test_after_teardown_nothing_labelled_remains(runtime):
    lab = Lab.up(parse_topology(TINY.format(name="lifecycle-a")), runtime=runtime)
    assert len(labelled(runtime, lab.name)) == 3  # two nodes, one network
    lab.down()
    assert labelled(runtime, lab.name) == []
    lab.down()  # idempotent


def test_two_labs_up_at_once_do_not_collide(runtime):
    first = Lab.up(parse_topology(TINY.format(name="lifecycle-b")), runtime=runtime)
    try:
        second = Lab.up(parse_topology(TINY.format(name="lifecycle-c")), runtime=runtime)
        try:
            assert (
                first.addresses.underlay_subnets["underlay"]
                != second.addresses.underlay_subnets["underlay"]
            )
            # Same pod CIDR in both, each lab's pods reach their own peers only.
            assert first.pod("p-1").ip == second.pod("p-1").ip
            expect.reachable([first.pod("p-2")], [first.pod("p-1")])
            expect.reachable([second.pod("p-2")], [second.pod("p-1")])
            assert first.pod("p-2").http(first.pod("p-1")).pod == "p-1"
            expect.unreachable([first.node("node-1")], [second.node("node-1")])
        finally:
            second.down()
    finally:
        first.down()


def test_a_failure_halfway_through_up_removes_what_it_made(runtime, monkeypatch):
    def broken(topology, addresses, underlay_mtu):
        return {"node-2": "echo 'simulated failure' >&2; exit 3"}

    monkeypatch.setitem(backends.PLANNERS, "vxlan", broken)
    topology = parse_topology(TINY.format(name="lifecycle-d"))
    with pytest.raises(Exception, match="simulated failure"):
        Lab.up(topology, runtime=runtime)
    assert labelled(runtime, PREFIX + "lifecycle-d") == []


def test_an_interrupt_during_up_removes_what_it_made(runtime):
    made: list[str] = []

    def interrupt(message: str) -> None:  # Ctrl-C once nodes and pods exist, at the first layer
        if message.startswith("applying"):
            made.extend(labelled(runtime, PREFIX + "lifecycle-e"))
            raise KeyboardInterrupt

    topology = parse_topology(TINY.format(name="lifecycle-e"))
    with pytest.raises(KeyboardInterrupt):
        Lab.up(topology, runtime=runtime, progress=interrupt)
    assert made, "the interrupt came before anything was created"
    assert labelled(runtime, PREFIX + "lifecycle-e") == []


def test_a_missing_image_is_refused_before_anything_is_created(runtime):
    text = TINY.format(name="lifecycle-f").replace(
        "node-2: {}", "node-2: {image: 'labkit/no-such-image:1'}"
    )
    with pytest.raises(TopologyError, match=r"nodes\.node-2\.image"):
        Lab.up(parse_topology(text), runtime=runtime)
    assert labelled(runtime, PREFIX + "lifecycle-f") == []


def test_cli_bad_topology_exits_2_and_creates_nothing(runtime, tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.format(name="lifecycle-g").replace("node: node-1", "node: node-9"))
    result = subprocess.run(
        [sys.executable, "-m", "labkit", "up", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "bad.yaml:7:" in result.stderr and "pods.p-1.node" in result.stderr
    assert "unknown node 'node-9'" in result.stderr
    assert labelled(runtime, PREFIX + "lifecycle-g") == []


def test_a_dead_leftover_of_the_same_name_is_replaced(runtime):
    """After an engine restart a lab's containers are all stopped: `up` replaces them."""
    topology = parse_topology(TINY.format(name="lifecycle-h"))
    first = Lab.up(topology, runtime=runtime)
    for node in first.nodes():
        runtime.stop_node(node.container, timeout=0)
    second = Lab.up(parse_topology(TINY.format(name="lifecycle-h")), runtime=runtime)
    try:
        expect.reachable([second.pod("p-2")], [second.pod("p-1")])
    finally:
        second.down()


def test_a_running_lab_of_the_same_name_is_refused(runtime):
    from labkit.errors import UsageError

    lab = Lab.up(parse_topology(TINY.format(name="lifecycle-i")), runtime=runtime)
    try:
        with pytest.raises(UsageError, match="already up"):
            Lab.up(parse_topology(TINY.format(name="lifecycle-i")), runtime=runtime)
        expect.reachable([lab.pod("p-2")], [lab.pod("p-1")])
    finally:
        lab.down()


def test_a_nodes_first_boot_runs_its_script_once_and_says_how_it_ended(runtime):
    """The script of a node's first boot is its container's command, not an exec:
    its output and exit status come back, the node runs on, and a start after a
    stop runs the image's command alone (a node started again is rebuilt by exec)."""
    lab, image = PREFIX + "lifecycle-boot", runtime.node_image()
    counted = "n=$(cat /tmp/boots 2>/dev/null || echo 0); echo $((n + 1)) > /tmp/boots"
    try:
        with pytest.raises(ExecError) as failed:
            runtime.create_node_running(
                lab, "n1", image, {}, script="echo out; echo err >&2; exit 3"
            )
        assert failed.value.result == ExecResult(3, "out\n", "err\n")
        assert runtime.is_running(container_name(lab, "n1"))

        lines = "; ".join(f"echo line {i}" for i in range(2000))  # many frames
        result = runtime.create_node_running(
            lab, "n2", image, {}, script=f"{counted}; {lines}; printf 'no newline'"
        )
        expected = "".join(f"line {i}\n" for i in range(2000)) + "no newline"
        assert result == ExecResult(0, expected, "")
        node = container_name(lab, "n2")
        runtime.stop_node(node, timeout=0)
        runtime.start_node(node)
        assert runtime.exec(node, "cat /tmp/boots").stdout == "1\n"
    finally:
        runtime.remove_lab(lab)
    assert labelled(runtime, lab) == []
