"""The command line against a live lab, and the pytest plugin's keep/reuse."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from cli_runner import labkit, labkit_child

pytestmark = pytest.mark.topology("flannel-vxlan")


def test_status_json_lists_nodes_and_pods(lab):
    result = labkit("status", lab.name, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    nodes = {node["name"]: node for node in document["nodes"]}
    assert nodes["node-1"]["ip"] == str(lab.node("node-1").ip)
    pods = {pod["name"]: pod for pod in document["pods"]}
    assert pods["web-2"] == {
        "name": "web-2",
        "node": "node-2",
        "namespace": "default",
        "ip": str(lab.pod("web-2").ip),
        "labels": {"app": "web"},
    }


def test_exec_runs_in_the_pods_namespace_and_passes_the_exit_code(lab):
    result = labkit(
        "exec", "--lab", lab.name, "web-2", "--", "ip", "-4", "-o", "addr", "show", "eth0"
    )
    assert result.returncode == 0, result.stderr
    assert f"{lab.pod('web-2').ip}/24" in result.stdout
    failed = labkit("exec", "--lab", lab.name, "node-1", "--", "sh", "-c", "exit 7")
    assert failed.returncode == 7


def test_exec_finds_a_pod_by_namespace_and_name(lab):
    added = labkit("pod", "add", "--lab", lab.name, "visitor", "--namespace", "shop")
    assert added.returncode == 0, added.stderr
    try:
        result = labkit("exec", "--lab", lab.name, "shop/visitor", "--", "ip", "-4", "-o", "addr")
        assert result.returncode == 0, result.stderr
        shown = labkit("status", lab.name, "--json")
        ip = next(p["ip"] for p in json.loads(shown.stdout)["pods"] if p["name"] == "visitor")
        assert f"{ip}/24" in result.stdout
    finally:
        assert labkit("pod", "delete", "--lab", lab.name, "shop/visitor").returncode == 0


def test_exec_passes_output_on_as_it_comes_then_the_exit_code(lab):
    script = "echo first; sleep 3; echo second >&2; exit 3"
    child = labkit_child(
        "exec", "--lab", lab.name, "client", "--", "sh", "-c", script,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert child.stdout is not None and child.stdout.readline() == b"first\n"
        assert child.poll() is None  # still running its sleep: not held until the end
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 3 and err == b"second\n"


def test_exec_on_an_unknown_target_names_what_exists(lab):
    result = labkit("exec", "--lab", lab.name, "nope", "--", "true")
    assert result.returncode == 2
    assert "no node or pod 'nope'" in result.stderr and "web-2" in result.stderr


def test_check_prints_the_matrix(lab):
    result = labkit("check", lab.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "paths reachable" in result.stdout and "web-2" in result.stdout


def test_check_selects_by_label_and_name_and_samples(lab):
    by_label = labkit("check", lab.name, "--from", "app=web", "--to", "client")
    assert by_label.returncode == 0, by_label.stdout + by_label.stderr
    assert "2/2 paths reachable" in by_label.stdout  # web-1, web-2 -> client
    sampled = labkit("check", lab.name, "--from", "web-*,client", "--sample", "3", "--seed", "7")
    assert sampled.returncode == 0, sampled.stdout + sampled.stderr
    assert "3/3 paths reachable" in sampled.stdout


def test_schema_is_json_schema():
    schema = json.loads(labkit("schema").stdout)
    assert {"nodes", "pods", "cluster", "networks"} <= set(schema["properties"])


def test_doctor_reports_mode_and_features():
    result = labkit("doctor", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["node mode"].split(":")[0] in ("privileged", "capabilities")
    features = report["kernel features"]
    assert features["vxlan"]["ok"] and features["bridge"]["ok"]
    assert {"ipvs", "netem", "wireguard"} <= set(features)


INNER_TEST = """
import pytest
pytestmark = pytest.mark.topology({path!r})

def test_pods_answer(lab):
    assert lab.pod("p-2").ping(lab.pod("p-1")).loss == 0
"""

INNER_TOPOLOGY = """
name: keep-reuse
nodes: {node-1: {}, node-2: {}}
pods: {p-1: {node: node-1}, p-2: {node: node-2}}
"""


def test_lab_keep_then_lab_reuse(pytester: pytest.Pytester):
    topology = pytester.path / "keep-reuse.yaml"
    topology.write_text(INNER_TOPOLOGY)
    pytester.makepyfile(test_inner=INNER_TEST.format(path=str(topology)))
    name = os.environ.get("LABKIT_NAME_PREFIX", "") + "keep-reuse"
    try:
        first = pytester.runpytest_subprocess("--lab-keep", "-p", "no:cacheprovider")
        first.assert_outcomes(passed=1)
        assert name in labkit("status", "--json", name).stdout
        # The second run attaches to the kept lab instead of creating one.
        second = pytester.runpytest_subprocess("--lab-reuse", "-p", "no:cacheprovider")
        second.assert_outcomes(passed=1)
        assert labkit("status", name).returncode == 2  # the second run removed it
    finally:
        labkit("down", name)
