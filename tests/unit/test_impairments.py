"""Impairments in the topology file: validation, the qdisc plan, the features it needs."""

from __future__ import annotations

import pytest
from topology_problems import problems

from labkit.dataplane.impairments import plan_impairments, qdisc_for, shaping_script
from labkit.dataplane.shaping import (
    ShapingError,
    netem_qdisc,
    parse_loss,
    parse_rate,
    parse_time,
    tbf_qdisc,
)
from labkit.errors import FeatureMissing
from labkit.topology import parse_topology, plan_addresses
from labkit.topology.impairments import (
    impairment_features,
    impairment_uses,
    link_impairments,
    refuse_missing_features,
)
from labkit.topology.model import Impairment

TOPOLOGY = """\
name: t
networks:
  lan: {subnet: 10.213.1.0/24, impair: {rate: 100mbit}}
  wan: {subnet: 10.213.2.0/24, impair: {delay: 20ms, loss: 0.5}}
nodes:
  node-1:
    roles: [router]
    networks: [lan, wan]
    impair:
      lan: {delay: 50ms, jitter: 5ms}
  node-2: {networks: [lan]}
  node-3: {networks: [wan]}
"""


def test_tc_units():
    assert parse_rate("20mbit") == 20e6 and parse_rate("1.5 gbit") == 1.5e9
    assert (
        parse_time("50ms") == 0.05
        and parse_time("1s") == 1
        and parse_time("200us") == pytest.approx(200e-6)
    )
    assert parse_loss("1%") == 1 and parse_loss(0.5) == 0.5 and parse_loss("100") == 100
    assert tbf_qdisc("20mbit") == "tbf rate 20000000bit burst 50000 latency 50ms"
    assert netem_qdisc("50ms", "10ms", "1%") == "netem delay 50ms 10ms loss 1%"
    assert netem_qdisc("50ms", None, None, "10mbit") == "netem delay 50ms rate 10000000bit"


@pytest.mark.parametrize(
    "call",
    [
        lambda: parse_rate("fast"),
        lambda: parse_rate("0mbit"),
        lambda: parse_rate("nanmbit"),
        lambda: parse_rate("20mbps"),
        lambda: parse_time("50"),
        lambda: parse_time("2h"),
        lambda: parse_time("61s"),
        lambda: parse_loss("101%"),
        lambda: parse_loss("-1%"),
        lambda: parse_loss("lots"),
        lambda: netem_qdisc(None, "5ms", None),
    ],
)
def test_what_tc_would_not_take_is_refused(call):
    with pytest.raises(ShapingError):
        call()


def test_a_node_link_overrides_its_network_setting_by_setting():
    links = link_impairments(parse_topology(TOPOLOGY))
    assert links[("node-1", "lan")] == Impairment(rate="100mbit", delay="50ms", jitter="5ms")
    assert links[("node-1", "wan")] == Impairment(delay="20ms", loss="0.5%")
    assert links[("node-2", "lan")] == Impairment(rate="100mbit")
    assert set(links) == {
        ("node-1", "lan"),
        ("node-1", "wan"),
        ("node-2", "lan"),
        ("node-3", "wan"),
    }


def test_the_plan_gives_each_link_its_qdisc():
    topology = parse_topology(TOPOLOGY)
    plan = plan_impairments(topology, plan_addresses(topology))
    by_link = {(link.node, link.network): link for links in plan.values() for link in links}
    lan_1 = by_link[("node-1", "lan")]
    assert lan_1.kind == "netem" and lan_1.qdisc == "netem delay 50ms 5ms rate 100000000bit"
    assert str(lan_1.address) == "10.213.1.2"
    assert by_link[("node-2", "lan")].qdisc.startswith("tbf rate 100000000bit ")
    assert by_link[("node-3", "wan")].qdisc == "netem delay 20ms loss 0.5%"
    script = shaping_script(plan["node-1"])
    assert "show to 10.213.1.2/32" in script and "root netem delay 50ms 5ms" in script
    assert script.count("tc qdisc replace") == 2


def test_features_needed():
    topology = parse_topology(TOPOLOGY)
    assert impairment_features(topology) == {"tbf", "netem"}
    uses = impairment_uses(topology)
    assert ("nodes", "node-1", "impair", "lan", "delay") in uses["netem"]
    assert ("networks", "wan", "impair", "loss") in uses["netem"]
    assert uses["tbf"] == [("networks", "lan", "impair", "rate")]
    rate_only = parse_topology(
        "name: t\nnetworks:\n  u: {impair: {rate: 1mbit}}\nnodes:\n  n: {}\n"
    )
    assert impairment_features(rate_only) == {"tbf"}
    assert impairment_features(parse_topology("name: t\nnodes:\n  n: {}\n")) == set()


def test_a_host_without_netem_refuses_delay_before_anything_is_created():
    topology = parse_topology(TOPOLOGY)
    with pytest.raises(FeatureMissing) as caught:
        refuse_missing_features(topology, lambda f: f != "netem", lambda f: "the kernel lacks it")
    message = str(caught.value)
    assert "delay, jitter and loss need the netem qdisc, but the kernel lacks it" in message
    assert "nodes.node-1.impair.lan.delay" in message and "networks.wan.impair.loss" in message
    assert caught.value.exit_code == 2
    refuse_missing_features(topology, lambda f: True, str)  # all there: nothing raised


def test_qdisc_for_a_rate_alone_is_tbf():
    assert qdisc_for(Impairment(rate="1mbit")).startswith("tbf ")
    assert qdisc_for(Impairment(loss="1%")) == "netem loss 1%"


@pytest.mark.parametrize(
    ("old", "new", "where", "says"),
    [
        ("rate: 100mbit", "rate: fast", "t.yaml:3:", "networks.lan.impair.rate: rate 'fast'"),
        ("delay: 20ms", "delay: 20", "t.yaml:4:", "use a number and s, ms or us"),
        ("loss: 0.5", "loss: 150", "t.yaml:4:", "at most 100%"),
        ("loss: 0.5", "loss: yes", "t.yaml:4:", "use a percentage"),
        ("jitter: 5ms", "jitter: 5ms, colour: red", "t.yaml:10:", "unknown field"),
        ("lan: {delay: 50ms,", "dmz: {delay: 50ms,", "t.yaml:10:", "unknown network 'dmz'"),
        ("delay: 50ms, jitter: 5ms", "jitter: 5ms", "t.yaml:10:", "jitter needs a delay"),
    ],
)
def test_bad_impairments_name_their_place(old: str, new: str, where: str, says: str):
    assert old in TOPOLOGY
    found = problems(TOPOLOGY.replace(old, new, 1))
    assert any(m.startswith(where) and says in m for m in found), found


def test_a_node_impairs_only_networks_it_is_on():
    text = TOPOLOGY.replace(
        "  node-2: {networks: [lan]}", "  node-2: {networks: [lan], impair: {wan: {delay: 1ms}}}"
    )
    (message,) = problems(text)
    assert "nodes.node-2.impair.wan" in message and "is not on network 'wan'" in message


def test_a_network_jitter_without_delay_is_said_once():
    text = "name: t\nnetworks:\n  u: {impair: {jitter: 1ms}}\nnodes:\n  a: {}\n  b: {}\n"
    (message,) = problems(text)
    assert "networks.u.impair.jitter" in message


def test_a_fault_changes_a_link_over_its_topology_settings_and_reverts_to_them():
    from labkit.dataplane.impairments import changed_qdisc, topology_qdisc

    topology = parse_topology(TOPOLOGY)
    assert topology_qdisc(topology, "node-3", "wan") == "netem delay 20ms loss 0.5%"
    change = Impairment(delay="100ms")
    assert changed_qdisc(topology, "node-3", "wan", change) == "netem delay 100ms loss 0.5%"
    assert changed_qdisc(topology, "node-2", "lan", change) == "netem delay 100ms rate 100000000bit"
