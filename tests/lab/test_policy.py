"""Network policy, the Kubernetes NetworkPolicy e2e shape: real lab, real packets.

Namespaces x, y, z with pods a, b, c each; every pod serves TCP and UDP on
ports 80 and 81. Each case sets its policies on the one shared lab and checks
the whole truth table (9 x 9 pods x 4 ports), one matrix per port and
protocol, each printed on failure.

The probes are batched (`probes.probe_many`): one exec per source pod dials
every target on every port at once, so a case costs nine execs instead of 288.
Denied paths must fail at once and say `denied` (the policy rejects with ICMP
admin-prohibited), allowed ones must be answered by the pod dialled.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from labkit import TcpResult, expect
from labkit.concurrency import parallel
from labkit.core import probes
from labkit.errors import TopologyError

pytestmark = pytest.mark.topology("policy")

PORTS = [(80, "TCP"), (81, "TCP"), (80, "UDP"), (81, "UDP")]
DENIAL_MS = 500  # a rate-limited ICMP error waits about 1 s; the socket timeout is 1.5 s
NAMESPACES = {
    "x": {"labels": {"ns": "x"}},
    "y": {"labels": {"ns": "y"}},
    "z": {"labels": {"ns": "z"}},
}
X_A_FROM_Y = {  # x-a takes traffic from namespace y only
    "x-a-from-y": {
        "namespace": "x",
        "pod_selector": {"match_labels": {"pod": "a"}},
        "ingress": [{"from": [{"namespace_selector": {"match_labels": {"ns": "y"}}}]}],
    }
}

Truth = Callable[
    [str, str, int, str], bool
]  # (source pod, target pod, port, protocol) -> reachable


def dial_everything(lab) -> dict[tuple[str, str, int, str], TcpResult]:
    """(source, target, port, protocol) -> result, for every pair of pods and every port.

    A path counts as reachable only when the pod dialled is the one that answers.
    """
    pods = lab.pods()

    def from_source(source):
        wanted = [(t, port, proto) for t in pods if t.name != source.name for port, proto in PORTS]
        jobs = [
            probes.Job(proto.lower(), str(t.ip), port, 1.5, "ping") for t, port, proto in wanted
        ]
        results = {}
        for (target, port, proto), result in zip(
            wanted, probes.probe_many(source, jobs), strict=True
        ):
            if result.ok and result.served_by != target.name:
                result = TcpResult(
                    False,
                    result.ms,
                    f"answered by {result.served_by!r}",
                    result.reply,
                    status="error",
                )
            results[(source.name, target.name, port, proto)] = result
        return results

    merged: dict[tuple[str, str, int, str], TcpResult] = {}
    for part in parallel(from_source, pods):
        merged.update(part)
    return merged


def check_truth_table(lab, truth: Truth) -> None:
    """Every port/protocol matrix equals the truth table (all four checked, all misses shown)."""
    results = dial_everything(lab)
    pods = lab.pods()
    failures = []
    for port, proto in PORTS:
        try:
            expect.matches(
                pods,
                pods,
                lambda s, t, port=port, proto=proto: truth(s, t, port, proto),
                probe=lambda s, t, port=port, proto=proto: results[(s.name, t.name, port, proto)],
            )
        except AssertionError as exc:
            failures.append(f"{proto} {port}: {exc}")
    # A path the policy closes is rejected at once, never left to time out.
    slow = [
        f"{s} -> {t} {proto} {port}: {result}"
        for (s, t, port, proto), result in results.items()
        if not truth(s, t, port, proto) and (result.status != "denied" or result.ms > DENIAL_MS)
    ]
    if slow:
        failures.append("denied paths not rejected at once:\n  " + "\n  ".join(slow))
    if failures:
        raise AssertionError("\n\n".join(failures))


def ns(pod: str) -> str:
    return pod.split("-")[0]


def label(pod: str) -> str:
    return pod.split("-")[1]


@pytest.fixture(autouse=True)
def no_policies_after(lab):
    yield
    lab.set_policies({}, namespaces=NAMESPACES)


def test_without_policies_everything_reaches_everything(lab):
    lab.set_policies({})
    check_truth_table(lab, lambda s, t, port, proto: True)


def test_default_deny_ingress(lab):
    lab.set_policies({"deny-ingress": {"namespace": "x", "policy_types": ["Ingress"]}})
    check_truth_table(lab, lambda s, t, port, proto: ns(t) != "x")


def test_denials_are_labelled_denied_and_quick_a_closed_port_refused(lab):
    lab.set_policies({"deny-ingress": {"namespace": "x", "policy_types": ["Ingress"]}})
    source = lab.pod("y-a")
    into_x = [
        probes.Job(kind, str(lab.pod(target).ip), port, 1.5, "ping")
        for target in ("x-a", "x-b", "x-c")
        for port in (80, 81)
        for kind in ("tcp", "udp")
    ]
    closed = [probes.Job(kind, str(lab.pod("z-a").ip), 82, 1.5, "ping") for kind in ("tcp", "udp")]
    # Twice over, back to back: the kernel's ICMP rate limit would slow the second dozen.
    results = probes.probe_many(source, into_x + into_x + closed)
    denials, refusals = results[: 2 * len(into_x)], results[2 * len(into_x) :]
    assert [r.status for r in denials] == ["denied"] * len(denials), denials
    assert all(r.icmp == (3, 13) and r.rejected_by for r in denials), denials
    assert max(r.ms for r in denials) < DENIAL_MS, [round(r.ms, 1) for r in denials]
    assert [r.status for r in refusals] == ["refused", "refused"], refusals
    assert all(r.refused and not r.denied for r in refusals)
    one = source.tcp(lab.pod("x-a"), 80, timeout=1.5)  # the single probe says the same
    assert one.status == "denied" and not one.ok and not one.refused, one


def test_default_deny_egress_keeps_replies_of_allowed_ingress(lab):
    lab.set_policies({"deny-egress": {"namespace": "x", "policy_types": ["Egress"]}})
    # y -> x and z -> x stay open: x's replies pass (stateful), over TCP and UDP alike.
    check_truth_table(lab, lambda s, t, port, proto: ns(s) != "x")


def test_allow_from_one_namespace(lab):
    lab.set_policies(X_A_FROM_Y)
    check_truth_table(lab, lambda s, t, port, proto: t != "x-a" or ns(s) == "y")


def test_allow_from_pods_with_a_label(lab):
    lab.set_policies(
        {
            "x-a-from-b-and-z-c": {
                "namespace": "x",
                "pod_selector": {"match_labels": {"pod": "a"}},
                "ingress": [
                    {
                        "from": [
                            {"pod_selector": {"match_labels": {"pod": "b"}}},  # x's own pods only
                            {  # both selectors: pods labelled c in namespaces labelled z
                                "namespace_selector": {"match_labels": {"ns": "z"}},
                                "pod_selector": {
                                    "match_expressions": [
                                        {"key": "pod", "operator": "In", "values": ["c"]}
                                    ]
                                },
                            },
                        ]
                    }
                ],
            }
        }
    )
    check_truth_table(lab, lambda s, t, port, proto: t != "x-a" or s in ("x-b", "z-c"))


def test_ip_block_with_an_exception(lab):
    node2_subnet = lab.addresses.pod_subnets["node-2"]
    excluded = lab.pod("y-a")
    assert excluded.node.name == "node-2"
    lab.set_policies(
        {
            "x-a-from-node-2-but-y-a": {
                "namespace": "x",
                "pod_selector": {"match_labels": {"pod": "a"}},
                "ingress": [
                    {
                        "from": [
                            {
                                "ip_block": {
                                    "cidr": str(node2_subnet),
                                    "except": [f"{excluded.ip}/32"],
                                }
                            }
                        ]
                    }
                ],
            }
        }
    )
    on_node2 = {p.name for p in lab.pods() if p.node.name == "node-2"}
    check_truth_table(lab, lambda s, t, port, proto: t != "x-a" or (s in on_node2 and s != "y-a"))


def test_egress_ip_block_with_an_exception(lab):
    excluded = lab.pod("z-b")
    lab.set_policies(
        {
            "x-b-to-pods-but-z-b": {
                "namespace": "x",
                "pod_selector": {"match_labels": {"pod": "b"}},
                "policy_types": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                "ip_block": {
                                    "cidr": str(lab.topology.cluster.pod_cidr),
                                    "except": [f"{excluded.ip}/32"],
                                }
                            }
                        ]
                    }
                ],
            }
        }
    )
    check_truth_table(lab, lambda s, t, port, proto: not (s == "x-b" and t == "z-b"))


def test_allow_one_port_only(lab):
    lab.set_policies(
        {
            "x-a-tcp-81": {
                "namespace": "x",
                "pod_selector": {"match_labels": {"pod": "a"}},
                "ingress": [{"ports": [{"protocol": "TCP", "port": 81}]}],
            }
        }
    )
    check_truth_table(lab, lambda s, t, port, proto: t != "x-a" or (port, proto) == (81, "TCP"))


def test_allow_a_named_port_from_a_namespace(lab):
    lab.set_policies(
        {
            "all-of-y-udp-80-from-z": {
                "namespace": "y",
                "ingress": [
                    {
                        "from": [{"namespace_selector": {"match_labels": {"ns": "z"}}}],
                        "ports": [{"protocol": "UDP", "port": "serve-80-udp"}],
                    }
                ],
            }
        }
    )
    check_truth_table(
        lab,
        lambda s, t, port, proto: ns(t) != "y" or (ns(s) == "z" and (port, proto) == (80, "UDP")),
    )


def test_isolated_namespace_talks_only_to_itself(lab):
    lab.set_policies({}, namespaces={**NAMESPACES, "z": {"labels": {"ns": "z"}, "isolated": True}})
    check_truth_table(lab, lambda s, t, port, proto: (ns(s) == "z") == (ns(t) == "z"))


def test_isolation_plus_a_policy_that_opens_it(lab):
    lab.set_policies(
        {
            "z-from-x-a": {
                "namespace": "z",
                "ingress": [
                    {
                        "from": [
                            {
                                "namespace_selector": {},
                                "pod_selector": {"match_labels": {"pod": "a"}},
                            }
                        ]
                    }
                ],
            }
        },
        namespaces={**NAMESPACES, "z": {"labels": {"ns": "z"}, "isolated": True}},
    )
    # Into z: z itself plus every pod labelled a (the policy); out of z: z only (isolation).
    check_truth_table(
        lab,
        lambda s, t, port, proto: (
            (ns(t) == "z" and (ns(s) == "z" or label(s) == "a")) or (ns(s) != "z" and ns(t) != "z")
        ),
    )


def test_policy_peers_follow_a_relabelled_pod(lab):
    lab.set_policies(
        {
            "x-a-from-y-b": {
                "namespace": "x",
                "pod_selector": {"match_labels": {"pod": "a"}},
                "ingress": [
                    {
                        "from": [
                            {
                                "namespace_selector": {"match_labels": {"ns": "y"}},
                                "pod_selector": {"match_labels": {"pod": "b"}},
                            }
                        ]
                    }
                ],
            }
        }
    )
    lab.set_labels("y-c", {"pod": "b"})
    try:
        check_truth_table(lab, lambda s, t, port, proto: t != "x-a" or s in ("y-b", "y-c"))
    finally:
        lab.set_labels("y-c", {"pod": "c"})


def test_a_policy_on_an_unknown_namespace_matches_nothing_and_status_says_so(lab):

    lab.set_policies(
        {
            "ghost": {"namespace": "nope", "policy_types": ["Ingress"]},
            "from-nowhere": {
                "namespace": "x",
                "pod_selector": {"match_labels": {"pod": "c"}},
                "ingress": [{"from": [{"namespace_selector": {"match_labels": {"ns": "nope"}}}]}],
            },
        }
    )
    warnings = lab.describe()["network_policy"]["warnings"]
    assert any("ghost" in w and "'nope' is unknown" in w for w in warnings), warnings
    assert any("from-nowhere" in w and "matches no known namespace" in w for w in warnings), (
        warnings
    )
    check_truth_table(lab, lambda s, t, port, proto: t != "x-c")


def test_a_bad_policy_changes_nothing(lab):
    good = {"deny-ingress": {"namespace": "x", "policy_types": ["Ingress"]}}
    lab.set_policies(good)
    before = {node.name: node.exec("iptables -S | grep LABKIT-POL").stdout for node in lab.nodes()}
    bad = {
        "bad-cidr": {
            "namespace": "y",
            "ingress": [{"from": [{"ip_block": {"cidr": "10.0.0.300/8"}}]}],
        },
        "bad-port": {"namespace": "y", "ingress": [{"ports": [{"port": 70000}]}]},
    }
    with pytest.raises(TopologyError) as error:
        lab.set_policies(bad)
    assert error.value.exit_code == 2
    message = str(error.value)
    assert (
        "policies.bad-cidr.ingress.0.from.0.ip_block.cidr: '10.0.0.300/8' is not a CIDR" in message
    )
    assert "policies.bad-port.ingress.0.ports.0.port: port 70000 is out of range 1-65535" in message
    assert set(lab.topology.policies) == {"deny-ingress"}
    assert {
        node.name: node.exec("iptables -S | grep LABKIT-POL").stdout for node in lab.nodes()
    } == before


def test_policy_holds_behind_a_service_vip(lab):
    # Policy sees the endpoint after the VIP's DNAT: the same rules hold through the Service.
    lab.set_policies(X_A_FROM_Y)
    vip = str(lab.service("x-a").vip)
    sources = [lab.pod(name) for name in ("x-b", "y-a", "y-b", "z-a", "z-c")]
    expect.matches(sources, [vip], lambda s, t: ns(s) == "y", expect.tcp(80, timeout=1), within=10)
