"""`labkit bench paths` without labs: parsing, medians, ratios, goals, the chart."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from labkit.bench import ladder, paths
from labkit.bench.paths import Figures

SOCKPERF = """\
sockperf: Summary: Round trip is 23.098 usec
sockperf: Total 67061 observations; each percentile contains 670.61 observations
sockperf: ---> <MAX> observation = 3581.856
sockperf: ---> percentile 99.999 = 3341.529
sockperf: ---> percentile 99.000 =   64.355
sockperf: ---> percentile 90.000 =   45.657
sockperf: ---> percentile 50.000 =   18.257
sockperf: ---> <MIN> observation =   17.646
"""


def test_parse_sockperf_percentiles():
    found = paths.parse_sockperf(SOCKPERF)
    assert found["50.000"] == 18.257 and found["99.000"] == 64.355


def test_sockperf_without_percentiles_is_an_error():
    with pytest.raises(paths.LabkitError, match="no percentiles"):
        paths.parse_sockperf("sockperf: ERROR: connection refused")


def figures(scale: float) -> Figures:
    return Figures(10 * scale, 12 * scale, 1 * scale, 5.0, 20 / scale, 80 / scale)


def test_median_and_ratios():
    middle = paths.median([figures(1), figures(3), figures(2)])
    assert middle == figures(2)
    ratio = paths.ratios(figures(0.5), figures(1))
    assert ratio["tcp1_gbit_s"] == pytest.approx(0.5)
    assert ratio["rtt_p50_us"] == pytest.approx(2.0)  # latency: above 1 is worse
    assert "udp_loss_pct" not in ratio


def fake_run() -> dict:
    measured = {
        "vxlan": {"pod_mtu": 1450, "up_s": 4.0, "samples": {
            "baseline": [figures(1)], "same-node": [figures(1.2)], "cross-node": [figures(0.8)]}},
        "host-gw": {"pod_mtu": 1500, "up_s": 4.0, "samples": {
            "baseline": [figures(1.1)], "same-node": [figures(1.2)], "cross-node": [figures(0.85)]}},
        "udp": {"pod_mtu": 1472, "up_s": 4.0, "samples": {
            "baseline": [figures(0.9)], "same-node": [figures(1.2)], "cross-node": [figures(0.05)]}},
        "bgp": {"skipped": "backend bgp needs l2-underlay, but ..."},
    }  # fmt: skip
    results = {
        "settings": {"repeats": 1, "seconds": 2.0, "paths": paths.PATHS},
        "host": {"kernel": "6.x", "cpus": 2},
        **paths.summarize(measured),
        "wall_s": 12.0,
    }
    results["goals"] = [{"goal": g, "met": m, "figure": f} for g, m, f in paths.goal_notes(results)]
    return results


def test_the_baseline_is_pooled_over_the_labs_and_ratios_use_it():
    results = fake_run()
    assert results["baseline"]["figures"]["tcp1_gbit_s"] == pytest.approx(10.0)
    assert len(results["baseline"]["samples"]) == 3
    assert results["backends"]["vxlan"]["ratios"]["cross-node"]["tcp1_gbit_s"] == pytest.approx(0.8)
    assert results["backends"]["bgp"] == {"skipped": "backend bgp needs l2-underlay, but ..."}


def test_goals():
    goals = {g["goal"]: (g["met"], g["figure"]) for g in fake_run()["goals"]}
    # vxlan's goal is against bare kernel VXLAN, which this fake run did not measure.
    assert not any(g.startswith("vxlan") for g in goals)
    assert goals["host-gw cross-node TCP x1 >= 0.95x baseline"] == (False, "0.77x")
    assert goals["udp cross-node TCP x1 well below vxlan (<= 0.5x)"] == (True, "0.06x vxlan")
    assert not any(g.startswith("bgp") for g in goals)


def tcp(gbit: float, per_cpu: float) -> dict[str, float]:
    return {"tcp1_gbit_s": gbit, "tcp4_gbit_s": 2 * gbit,
            "tcp1_gbit_per_cpu_s": per_cpu, "tcp4_gbit_per_cpu_s": per_cpu}  # fmt: skip


def test_ladder_ratios_are_medians_of_rounds_paired_with_their_reference():
    samples = {
        "cross-node": [tcp(9, 9), tcp(4, 9), tcp(1, 8)],
        "bare-vxlan": [tcp(10, 10), tcp(5, 10), tcp(2, 10)],  # the load drifts between rounds
        "cross-node, no conntrack": [tcp(9.9, 9.9), tcp(4.4, 9.9), tcp(1.1, 8.8)],
    }
    rungs = {(r["path"], r["reference"]): r["ratios"] for r in ladder.ladder(samples)}
    # Paired: 0.9, 0.8, 0.5 -> 0.8 (a ratio of medians would say 4/5 too, but by luck).
    assert rungs[("cross-node", "bare-vxlan")]["tcp1_gbit_s"] == pytest.approx(0.8)
    assert rungs[("cross-node", "bare-vxlan")]["tcp1_gbit_per_cpu_s"] == pytest.approx(0.9)
    assert rungs[("cross-node, no conntrack", "cross-node")]["tcp1_gbit_s"] == pytest.approx(1.1)
    assert ("cross-node", "direct") not in rungs  # not measured: not shown


def test_vxlan_is_held_against_bare_kernel_vxlan_also_on_jumbo_frames():
    samples = {"cross-node": [tcp(9.5, 9)], "bare-vxlan": [tcp(10, 10)], "baseline": [tcp(20, 20)]}
    result = {"vxlan@9000": {"ladder": ladder.ladder(samples)}}
    goals = {goal: (met, figure) for goal, met, figure in ladder.goal_notes(result)}
    assert goals["vxlan@9000 cross-node TCP x1 >= 0.9x bare-vxlan"] == (True, "0.95x")
    assert goals["vxlan@9000 cross-node TCP x1 per CPU >= 0.9x bare-vxlan"] == (True, "0.90x")


def test_a_backend_at_an_mtu_is_its_topology_with_every_network_at_that_mtu():
    jumbo = paths.backend_topology("host-gw@9000")
    assert jumbo.name == "backend-host-gw-9000"
    assert {n.mtu for n in jumbo.networks.values()} == {9000}
    assert paths.backend_topology("host-gw").networks["underlay"].mtu is None


def test_a_backend_on_macvlan_is_its_topology_with_every_network_a_macvlan():
    both = paths.backend_topology("vxlan@macvlan+9000")
    assert both.name == "backend-vxlan-macvlan-9000"
    assert {(n.driver, n.mtu) for n in both.networks.values()} == {("macvlan", 9000)}
    assert paths.backend_topology("vxlan").networks["underlay"].driver == "bridge"


def test_a_backend_with_ptp_pods_is_its_topology_with_the_ptp_plugin():
    ptp = paths.backend_topology("host-gw@macvlan+ptp")
    assert ptp.name == "backend-host-gw-macvlan-ptp"
    assert ptp.cluster.cni_plugin == "ptp" and ptp.cluster.backend == "host-gw"
    assert {n.driver for n in ptp.networks.values()} == {"macvlan"}
    assert paths.backend_topology("host-gw").cluster.cni_plugin == "bridge"


def test_table_and_chart(tmp_path):
    results = fake_run()
    out = io.StringIO()
    paths.show(results, Console(file=out, width=80))
    text = out.getvalue()
    assert "vxlan MTU 1450" in text and "0.80x" in text and "skipped" in text
    assert "MISSED" in text
    pytest.importorskip("matplotlib")
    from labkit.bench.paths_chart import draw

    png = tmp_path / "paths.png"
    draw(results, png)
    assert png.read_bytes().startswith(b"\x89PNG")


def test_a_busy_host_is_named_as_the_reason_for_missed_goals():
    results = fake_run()
    results["host"]["load_1min"] = [1.0, 1.5]
    assert paths.busy_note(results) == ""
    results["host"]["load_1min"] = [1.0, 9.5]
    assert "load average up to 9.5 on 2 CPUs" in paths.busy_note(results)


@pytest.mark.parametrize(
    ("name", "problem"),
    [("host-gw", None), ("vxlan@macvlan+9000+ptp", None), ("bgp@ptp", None),
     ("geneve", "no backend 'geneve'"), ("vxlan@9", "MTU 9 is outside 68..65535"),
     ("vxlan@ipvlan", "'ipvlan' is none of <mtu>, macvlan, ptp")],
)  # fmt: skip
def test_a_backend_name_is_a_backend_and_known_variants(name, problem):
    found = paths.backend_problem(name)
    assert found is None if problem is None else problem in (found or ""), found


def test_an_unknown_backend_is_refused_with_exit_code_2_before_any_lab():
    from typer.testing import CliRunner

    from labkit.cli import app

    result = CliRunner().invoke(app, ["bench", "paths", "--backends", "vxlan,vxlan@jumbo"])
    assert result.exit_code == 2, result.output
    assert "'vxlan@jumbo': 'jumbo' is none of <mtu>, macvlan, ptp" in result.output
