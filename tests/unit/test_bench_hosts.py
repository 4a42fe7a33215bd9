"""`labkit bench hosts`: its topologies, hosts files and report (no engine needed)."""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path

from rich.console import Console

from labkit.bench.hosts import SHARED_CPUS, hosts_file_of, paths_topology, show
from labkit.runtime.sandbox import Sandbox, inventory_text, plan_sandbox
from labkit.topology.inventory import parse_inventory


def test_paths_topology_puts_two_nodes_on_h1_and_one_on_h2():
    topology = paths_topology("udp")
    assert {name: node.host for name, node in topology.nodes.items()} == {
        "node-1": "h1",
        "node-2": "h1",
        "node-3": "h2",
    }
    assert topology.cluster.backend == "udp"
    assert {p.node for p in topology.pods.values()} == {"node-1", "node-2", "node-3"}


def test_a_hosts_file_of_the_first_hosts_keeps_the_shared_l2(tmp_path: Path):
    plan = plan_sandbox("b", 3, IPv4Network("10.250.9.0/24"))
    (tmp_path / "hosts.yaml").write_text(inventory_text(plan))
    sandbox = Sandbox(plan, tmp_path / "hosts.yaml")
    two = parse_inventory(Path(hosts_file_of(sandbox, 2, tmp_path)).read_text())
    assert two.host_names == ["h1", "h2"] and two.l2 is not None


def test_the_report_says_the_hosts_share_the_cpus():
    figures = dict.fromkeys(
        ("tcp1_gbit_s", "tcp4_gbit_s", "udp_gbit_s", "udp_loss_pct", "rtt_p50_us", "rtt_p99_us"),
        1.0,
    )
    results = {
        "note": SHARED_CPUS.format(cpus=2),
        "lifecycle": {"default (3 nodes)": {"1": {"up_s": 5.0, "down_s": 1.0}}},
        "baseline": figures,
        "paths": {"vxlan": {"pod_mtu": 1400, "within a host": figures, "across hosts": figures}},
    }
    console = Console(record=True, width=200)
    show(results, console)
    text = console.export_text()
    assert "share its 2 CPU(s)" in text and "1.00x" in text and "5.0 / 1.0" in text
