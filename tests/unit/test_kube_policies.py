"""The NetworkPolicy e2e cases of tests/lab/test_policy.py as standard YAML files.

Converting each file gives exactly the policies the lab test sets in labkit's
dialect, so the lab can run the same truth tables from the YAML.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.errors import TopologyError
from labkit.topology import load_topology
from labkit.topology.addressing import allocate_pod_ips, node_subnets
from labkit.topology.kube import load_manifests
from labkit.topology.model import NetworkPolicy, key_name

POLICIES = Path(__file__).parent.parent / "data" / "policies"
ROOT = Path(__file__).parent.parent.parent

X_A = {"match_labels": {"pod": "a"}}
# file -> the policies test_policy.py sets (dialect), with the pod IPs of the `policy` lab.
CASES = {
    "default-deny-ingress": {"deny-ingress": {"namespace": "x", "policy_types": ["Ingress"]}},
    "default-deny-egress": {"deny-egress": {"namespace": "x", "policy_types": ["Egress"]}},
    "allow-from-one-namespace": {
        "x-a-from-y": {
            "namespace": "x",
            "pod_selector": X_A,
            "ingress": [{"from": [{"namespace_selector": {"match_labels": {"ns": "y"}}}]}],
        }
    },
    "allow-from-pods-with-a-label": {
        "x-a-from-b-and-z-c": {
            "namespace": "x",
            "pod_selector": X_A,
            "ingress": [
                {
                    "from": [
                        {"pod_selector": {"match_labels": {"pod": "b"}}},
                        {
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
    },
    "ip-block-with-an-exception": {
        "x-a-from-node-2-but-y-a": {
            "namespace": "x",
            "pod_selector": X_A,
            "ingress": [{"from": [{"ip_block": {"cidr": "{node-2}", "except": ["{y-a}/32"]}}]}],
        }
    },
    "egress-ip-block-with-an-exception": {
        "x-b-to-pods-but-z-b": {
            "namespace": "x",
            "pod_selector": {"match_labels": {"pod": "b"}},
            "policy_types": ["Egress"],
            "egress": [{"to": [{"ip_block": {"cidr": "{pod_cidr}", "except": ["{z-b}/32"]}}]}],
        }
    },
    "allow-one-port-only": {
        "x-a-tcp-81": {
            "namespace": "x",
            "pod_selector": X_A,
            "ingress": [{"ports": [{"protocol": "TCP", "port": 81}]}],
        }
    },
    "allow-a-named-port-from-a-namespace": {
        "all-of-y-udp-80-from-z": {
            "namespace": "y",
            "ingress": [
                {
                    "from": [{"namespace_selector": {"match_labels": {"ns": "z"}}}],
                    "ports": [{"protocol": "UDP", "port": "serve-80-udp"}],
                }
            ],
        }
    },
    "peers-follow-a-relabelled-pod": {
        "x-a-from-y-b": {
            "namespace": "x",
            "pod_selector": X_A,
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
    },
    "unknown-namespace": {
        "ghost": {"namespace": "nope", "policy_types": ["Ingress"]},
        "from-nowhere": {
            "namespace": "x",
            "pod_selector": {"match_labels": {"pod": "c"}},
            "ingress": [{"from": [{"namespace_selector": {"match_labels": {"ns": "nope"}}}]}],
        },
    },
    # labkit's `isolated: true` namespace has no Kubernetes form: these are its
    # standard equivalent (same truth table), pinned here as what they convert to.
    "isolated-namespace": {
        "z-isolated": {
            "namespace": "z",
            "policy_types": ["Ingress", "Egress"],
            "ingress": [{"from": [{"pod_selector": {}}]}],
            "egress": [{"to": [{"pod_selector": {}}]}],
        }
    },
    "isolation-plus-a-policy-that-opens-it": {
        "z-isolated": {
            "namespace": "z",
            "policy_types": ["Ingress", "Egress"],
            "ingress": [{"from": [{"pod_selector": {}}]}],
            "egress": [{"to": [{"pod_selector": {}}]}],
        },
        "z-from-x-a": {
            "namespace": "z",
            "ingress": [{"from": [{"namespace_selector": {}, "pod_selector": X_A}]}],
        },
    },
}


@pytest.fixture(scope="module")
def policy_topology():
    return load_topology(ROOT / "topologies" / "policy.yaml")


def lab_values(topology) -> dict[str, str]:
    """What the lab test computes at run time: node-2's subnet, the pod CIDR, pod IPs."""
    subnets = node_subnets(topology)
    ips = allocate_pod_ips(topology, subnets)
    return {
        "node-2": str(subnets["node-2"]),
        "pod_cidr": str(topology.cluster.pod_cidr),
        **{name: str(ip) for name, ip in ips.items()},
    }


def fill(value, values):
    if isinstance(value, dict):
        return {key: fill(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item, values) for item in value]
    if isinstance(value, str) and "{" in value:
        for name, text in values.items():
            value = value.replace("{" + name + "}", text)
    return value


def comparable(policies) -> dict[str, dict]:
    return {key_name(k): p.model_dump(exclude={"origin"}) for k, p in policies.items()}


def test_every_case_has_its_file():
    files = {path.stem for path in POLICIES.glob("*.yaml")} - {"bad-policies"}
    assert files == set(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_yaml_converts_to_the_dialect_policies(policy_topology, case):
    report = load_manifests([POLICIES / f"{case}.yaml"], policy_topology)
    expected = {
        name: NetworkPolicy.model_validate(fill(spec, lab_values(policy_topology)))
        for name, spec in CASES[case].items()
    }
    assert comparable(report.topology.policies) == comparable(expected)
    # Keyed as Kubernetes scopes them: NS/NAME outside default.
    assert all("/" in key for key in report.topology.policies)


def test_bad_policies_name_file_line_document_and_field(policy_topology):
    with pytest.raises(TopologyError) as caught:
        load_manifests([POLICIES / "bad-policies.yaml"], policy_topology)
    assert caught.value.exit_code == 2
    messages = [str(problem) for problem in caught.value.problems]
    source = str(POLICIES / "bad-policies.yaml")
    assert (
        f"{source}:9: NetworkPolicy/y/bad-cidr: spec.ingress.0.from.0.ipBlock.cidr: "
        "'10.0.0.300/8' is not a CIDR (like 10.0.0.0/8)" in messages
    )
    assert (
        f"{source}:18: NetworkPolicy/y/bad-port: spec.ingress.0.ports.0.port: "
        "port 70000 is out of range 1-65535" in messages
    )
