"""One lab, the day-to-day tools on it: impairments from the file, packet
capture (CLI and fixture), graphs of the live lab, and `labkit stop`/`start`.

The lab (topologies/impaired.yaml) caps node-1's underlay link at 20 Mbit/s;
a policy lets only `client` reach `web`. The tests run in file order: the last
one stops and starts the whole lab.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from cli_runner import labkit, labkit_child

from labkit import expect
from labkit.core.state import state_dir
from labkit.runtime import features

pytestmark = pytest.mark.topology("impaired")

PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4"}  # pcap, either byte order
HTTP = expect.http(8080, timeout=2)
STATE_DIR = state_dir()  # before pytester moves HOME


def qdisc(lab, node: str) -> str:
    """The root qdisc of the node's underlay link, as tc shows it."""
    device = lab.node(node).link().device
    return lab.node(node).exec(f"tc qdisc show dev {device} root").stdout


def test_a_rate_in_the_file_caps_what_the_node_sends(lab, measure):
    assert "tbf" in qdisc(lab, "node-1") and "rate 20Mbit" in qdisc(lab, "node-1")
    assert "tbf" not in qdisc(lab, "node-2")
    shown = lab.describe()["impairments"]
    assert [(i["node"], i["network"], i["impair"]) for i in shown] == [
        ("node-1", "underlay", "20mbit")
    ]
    result = lab.iperf(lab.pod("client"), lab.pod("web"), seconds=2)
    measure("impaired_link_mbit", result.bits_per_second / 1e6, "Mbit/s")
    # tbf with a 20 ms bucket: near the cap, never far above it.
    assert 12e6 < result.bits_per_second < 22e6


def test_a_rate_fault_on_an_impaired_link_changes_it_and_its_revert_restores_it(lab, faults):
    fault = faults.rate_limit("node-1", "5mbit")
    assert "rate 5Mbit" in qdisc(lab, "node-1")
    graph = labkit("graph", lab.name, "--format", "mermaid")
    assert graph.returncode == 0, graph.stderr
    assert "5000000bit" in graph.stdout  # the live lab's link shows the fault's shaping
    faults.revert(fault)
    assert "rate 20Mbit" in qdisc(lab, "node-1")  # the topology's own, not none


def test_a_netem_fault_over_a_rate_keeps_the_rate(lab, faults):
    if not features.has("netem"):
        pytest.skip(features.missing_reason("netem"))
    fault = faults.netem("node-1", delay="20ms")
    shown = qdisc(lab, "node-1")
    assert "netem" in shown and "delay 20" in shown and "rate 20Mbit" in shown
    faults.revert(fault)
    assert "tbf" in qdisc(lab, "node-1")


def test_labkit_capture_streams_pcap_until_ctrl_c(lab):
    child = labkit_child(
        "capture", "web", "--lab", lab.name, "--", "tcp", "port", "8080",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert child.stderr is not None
        started = child.stderr.readline().decode()  # "capturing on web (...)" once tcpdump listens
        assert "capturing on web" in started, started + child.stderr.read().decode()
        for _ in range(3):
            assert lab.pod("client").http(lab.pod("web")).ok
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=15)
    finally:
        child.kill()
    assert child.returncode == 0, stderr.decode()
    assert stdout[:4] in PCAP_MAGIC and len(stdout) > 24 + 3 * 60
    count = int(stderr.decode().split("packets captured")[0].split()[-1])
    assert count >= 9  # three HTTP exchanges: handshakes, requests, answers, closes


def test_the_capture_fixture_keeps_the_pcaps_of_failed_tests(lab, tmp_path, pytester, monkeypatch):
    """A test that captures and fails leaves its pcap and names it in the JUnit XML;
    one that passes leaves none. Run against this lab (--lab-reuse --lab-keep)."""
    root = Path(__file__).parents[2]
    pytester.makepyfile(
        test_captured=f"""
        import pytest
        pytestmark = pytest.mark.topology({str(root / "topologies" / "impaired.yaml")!r})

        def test_passes(lab, capture):
            capture("web", filter="tcp port 8080")
            assert lab.pod("client").http(lab.pod("web")).ok

        def test_fails(lab, capture):
            capture("web", "client", filter="tcp port 8080")
            assert lab.pod("client").http(lab.pod("web")).ok
            assert False, "on purpose"
        """
    )
    junit = tmp_path / "junit.xml"
    monkeypatch.setenv("LABKIT_STATE_DIR", str(STATE_DIR))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    result = pytester.runpytest_subprocess(
        "--lab-reuse", "--lab-keep", f"--junitxml={junit}", f"--lab-pcap-dir={tmp_path / 'pcap'}",
        "-p", "no:cacheprovider",
    )  # fmt: skip
    result.assert_outcomes(passed=1, failed=1)
    kept = sorted((tmp_path / "pcap").rglob("*.pcap"))
    assert [p.name for p in kept] == ["client.pcap", "web.pcap"]
    assert all("test_fails" in str(p) and p.read_bytes()[:4] in PCAP_MAGIC for p in kept)
    properties = [
        (case.get("name"), prop.get("value"))
        for case in ET.parse(junit).iter("testcase")
        for prop in case.iter("property")
        if prop.get("name") == "pcap"
    ]
    assert sorted(properties) == [("test_fails", str(p)) for p in kept]


def test_stop_and_start_bring_the_lab_back_as_recorded(lab, faults):
    before = lab.describe()
    faults.rate_limit("node-2", "10mbit")  # a fault that must outlive the stop
    stopped = labkit("stop", lab.name)
    assert stopped.returncode == 0, stopped.stderr
    assert not any(lab.runtime.is_running(node.container) for node in lab.nodes())
    graph = labkit("graph", lab.name)
    assert (
        "class node_node_1 stopped" in graph.stdout and "class node_node_2 stopped" in graph.stdout
    )
    again = labkit("up", "impaired")
    assert again.returncode == 2 and "is stopped" in again.stderr and "labkit start" in again.stderr

    started = time.perf_counter()
    back = labkit("start", lab.name)
    assert back.returncode == 0, back.stderr
    print(f"[labkit] start took {time.perf_counter() - started:.1f} s (CLI, 2 nodes)")
    after = lab.describe()
    assert [(n["name"], n["ips"]) for n in after["nodes"]] == [
        (n["name"], n["ips"]) for n in before["nodes"]
    ]
    assert [(p["name"], p["ip"]) for p in after["pods"]] == [
        (p["name"], p["ip"]) for p in before["pods"]
    ]
    vip = lab.service("web").vip
    expect.reachable([lab.pod("client")], [lab.pod("web")], HTTP, within=10)
    assert lab.pod("client").http(vip, 80).pod == "web"  # the service
    expect.unreachable([lab.pod("other")], [lab.pod("web")], HTTP)  # the policy
    assert "rate 20Mbit" in qdisc(lab, "node-1")  # the impairment
    assert "rate 10Mbit" in qdisc(lab, "node-2")  # the fault
