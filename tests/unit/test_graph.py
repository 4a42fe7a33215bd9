"""Topology graphs: the model, and its Mermaid and DOT text."""

from __future__ import annotations

import shutil

import pytest

from labkit.errors import UsageError
from labkit.topology import parse_topology, plan_addresses
from labkit.topology.graph import LiveState, graph_of, live_from_faults, render

TOPOLOGY = """\
name: g
networks:
  lan: {subnet: 10.213.1.0/24, impair: {delay: 20ms}}
  wan: {subnet: 10.213.2.0/24}
nodes:
  edge: {networks: [lan, wan], roles: [router]}
  node-1: {networks: [lan]}
  node-2: {networks: [lan]}
pods:
  web-1: {node: node-1, labels: {app: web}, ports: [{name: http, port: 8080}]}
  web-2: {node: node-2, labels: {app: web}, ports: [{name: http, port: 8080}]}
  client: {node: node-1}
services:
  web:
    selector: {app: web}
    type: NodePort
    ports: [{port: 80, target_port: http, node_port: 30080}]
"""


@pytest.fixture
def topology():
    return parse_topology(TOPOLOGY)


def test_the_graph_has_networks_nodes_pods_services_and_endpoints(topology):
    graph = graph_of(topology)
    kinds = {v.id: v.kind for v in graph.vertices}
    assert kinds["network.lan"] == "network" and kinds["node.edge"] == "node"
    assert kinds["pod.web-1"] == "pod" and kinds["service.web"] == "service"
    assert graph.vertex("node.edge").details == ("router",)
    assert graph.vertex("pod.client").parent == "node.node-1"
    links = {(e.tail, e.head): e for e in graph.edges if e.kind == "link"}
    assert set(links) == {
        ("node.edge", "network.lan"),
        ("node.edge", "network.wan"),
        ("node.node-1", "network.lan"),
        ("node.node-2", "network.lan"),
    }
    assert links[("node.node-1", "network.lan")].label == "20ms"
    assert links[("node.node-1", "network.lan")].state == "impaired"
    assert links[("node.edge", "network.wan")].state == "up"
    endpoints = sorted((e.head, e.label) for e in graph.edges if e.kind == "endpoint")
    assert endpoints == [("pod.web-1", "8080"), ("pod.web-2", "8080")]


def test_addresses_add_ips_and_vips(topology):
    graph = graph_of(topology, plan_addresses(topology))
    assert graph.vertex("pod.web-1").details == ("10.244.0.2",)
    assert graph.vertex("node.node-1").details == ("pods 10.244.0.0/24",)
    assert graph.vertex("service.web").details == ("NodePort 10.96.0.1", "80/TCP→http :30080")
    link = next(e for e in graph.edges if e.tail == "node.edge" and e.head == "network.wan")
    assert link.label == "10.213.2.2"


def test_live_state_from_fault_records(topology):
    faults = [
        {"kind": "node-stop", "nodes": ["node-2"]},
        {"kind": "link-down", "nodes": ["edge"], "params": {"network": "wan"}},
        {"kind": "link-down", "nodes": ["node-1"], "params": {"network": None}},
        {"kind": "partition", "nodes": ["node-1"], "others": ["node-2"]},
        {
            "kind": "rate-limit",
            "nodes": ["edge"],
            "params": {"network": "lan", "qdisc": "tbf rate 1mbit"},
        },
        {"kind": "pod-kill", "pod": "client", "nodes": []},
    ]
    live = live_from_faults(faults, topology)
    assert live.stopped_nodes == {"node-2"}
    assert live.down_links == {("edge", "wan"), ("node-1", "lan")}
    assert live.partitions == ((("node-1",), ("node-2",)),)
    graph = graph_of(topology, live=live)
    assert graph.vertex("node.node-2").state == "stopped"
    assert graph.vertex("pod.web-2").state == "stopped"
    assert graph.vertex("pod.client").state == "down"
    states = {(e.tail, e.head): (e.state, e.label) for e in graph.edges}
    assert states[("node.edge", "network.wan")] == ("down", "DOWN")
    assert states[("node.edge", "network.lan")] == ("impaired", "tbf rate 1mbit")
    assert states[("node.node-1", "network.lan")] == ("down", "20ms DOWN")
    assert states[("service.web", "pod.web-2")][0] == "down"
    assert states[("partition.1", "node.node-1")] == ("cut", "")
    assert graph.vertex("partition.1").details == ("cut off from node-2",)


def test_mermaid_text(topology):
    text = render(
        graph_of(topology, live=LiveState(stopped_nodes=frozenset({"node-2"}))), "mermaid"
    )
    assert isinstance(text, str)
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert '  network_lan{{"lan<br/>10.213.1.0/24"}}:::network' in lines
    assert '  subgraph node_node_1["node-1"]' in lines
    assert '    pod_client("client"):::pod' in lines
    assert '  node_edge["edge<br/>router"]:::node' in lines
    assert '  node_node_1 ===|"20ms"| network_lan' in lines
    assert "  node_edge --- network_wan" in lines
    assert '  service_web -->|"8080"| pod_web_1' in lines
    assert '  service_web -.->|"8080"| pod_web_2' in lines  # its node is stopped
    assert "  class node_node_2 stopped" in lines
    assert text.count("subgraph") == text.count("\n  end")


def test_dot_text(topology):
    text = render(graph_of(topology), "dot")
    assert isinstance(text, str)
    assert text.startswith("digraph g {")
    assert "subgraph cluster_node.node-1 {" in text.replace('"', "")
    assert '"node.edge" -> "network.wan" [dir=none]' in text
    assert '"service.web" -> "pod.web-1" [label=8080' in text
    assert "shape=hexagon" in text and "shape=component" in text


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_svg_and_png_are_laid_out_by_graphviz(topology):
    svg = render(graph_of(topology), "svg")
    assert isinstance(svg, str) and "<svg" in svg and "web&#45;1" in svg
    png = render(graph_of(topology), "png")
    assert isinstance(png, bytes) and png.startswith(b"\x89PNG")


def test_an_unknown_format_is_a_usage_error(topology):
    with pytest.raises(UsageError, match="mermaid, dot, svg, png"):
        render(graph_of(topology), "jpeg")
