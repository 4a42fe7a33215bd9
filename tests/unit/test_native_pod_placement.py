"""Native pods that name no node: placed as a scheduler would, once, and kept."""

from __future__ import annotations

import io

import jsonschema  # kubernetes-validate's own
import pytest
import yaml
from topology_problems import problems

from labkit.topology import parse_topology
from labkit.topology.kube import load_manifests
from labkit.topology.model import Topology

NODES = """\
name: t
nodes:
  node-1: {}
  client: {roles: [external]}
  node-2: {}
  node-3: {}
"""


def nodes_of(text: str) -> dict[str, str]:
    return {key: pod.node for key, pod in parse_topology(text).pods.items()}


def test_pods_without_a_node_go_to_the_least_loaded_pod_node_in_file_order():
    placed = nodes_of(
        NODES
        + """\
pods:
  a: {}
  pinned-1: {node: node-1}
  b: {labels: {app: web}}
  pinned-2: {node: node-2}
  c: {}
  d: {}
"""
    )
    # node-1 and node-2 carry one pinned pod each; the external client runs none.
    assert placed == {
        "a": "node-3",
        "pinned-1": "node-1",
        "b": "node-1",
        "pinned-2": "node-2",
        "c": "node-2",
        "d": "node-3",
    }


def test_the_same_file_places_the_same_way_every_time():
    text = NODES + "pods:\n" + "".join(f"  p{i}: {{}}\n" for i in range(7))
    first = nodes_of(text)
    assert first == nodes_of(text)
    assert sorted(first.values()).count("node-1") == 3  # 7 pods over 3 nodes: 3, 2, 2


def test_a_saved_topology_keeps_the_nodes_it_was_given():
    topology = parse_topology(NODES + "pods:\n  a: {}\n  b: {}\n")
    saved = topology.model_dump(mode="json")
    saved["pods"]["extra"] = {"node": "node-1"}  # would change where a and b land, were they placed
    reloaded = Topology.model_validate(saved)
    assert reloaded.pods["a"].node == "node-1" and reloaded.pods["b"].node == "node-2"


def test_manifest_pods_count_the_placed_native_pods_as_load():
    topology = parse_topology(NODES + "pods:\n  a: {}\n  b: {}\n")
    deployment = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
"""
    merged = load_manifests(["-"], topology, stdin=io.StringIO(deployment)).topology
    (web,) = [pod for key, pod in merged.pods.items() if key.startswith("web-")]
    assert web.node == "node-3"
    assert merged.pods["a"].node == "node-1" and merged.pods["b"].node == "node-2"


def test_a_pod_naming_an_unknown_node_is_still_named_with_its_place():
    (message,) = problems(NODES + "pods:\n  a: {}\n  b: {node: node-7}\n")
    assert message.startswith("t.yaml:9:") and "pods.b.node" in message
    assert "unknown node 'node-7'" in message


def test_with_no_pod_running_node_the_node_is_required():
    (message,) = problems("name: t\nnodes:\n  c: {roles: [external]}\npods:\n  a: {}\n")
    assert "pods.a.node" in message


def test_the_published_schema_takes_a_pod_without_a_node_and_a_single_probe():
    document = yaml.safe_load(
        NODES + "pods:\n  a: {readiness: {kind: tcp, port: 80}}\n  b: {node: node-1}\n"
    )
    jsonschema.validate(document, Topology.model_json_schema())
    document["pods"]["c"] = {"readiness": "often"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, Topology.model_json_schema())
