"""Bad service input: a clear message naming the place in the file, exit code 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from labkit.cli import app
from labkit.errors import TopologyError
from labkit.topology.loader import parse_topology

BASE = """\
name: t
nodes: {node-1: {}}
pods:
  web-1: {node: node-1, labels: {app: web}, ports: [{name: http, port: 8080}]}
services:
"""


def problems(services: str, base: str = BASE) -> list[str]:
    with pytest.raises(TopologyError) as caught:
        parse_topology(base + services, source="t.yaml")
    return [str(problem) for problem in caught.value.problems]


def test_vip_outside_the_service_cidr():
    found = problems("  web: {selector: {app: web}, vip: 10.1.0.5, ports: [{port: 80}]}\n")
    assert found == [
        "t.yaml:6:36: services.web.vip: 10.1.0.5 is outside the service CIDR 10.96.0.0/12"
    ]


def test_duplicate_vip_and_the_dns_address():
    found = problems(
        "  a: {selector: {app: web}, vip: 10.96.0.5, ports: [{port: 80}]}\n"
        "  b: {selector: {app: web}, vip: 10.96.0.5, ports: [{port: 80}]}\n"
        "  c: {selector: {app: web}, vip: 10.96.0.10, ports: [{port: 80}]}\n"
    )
    assert found == [
        "t.yaml:7:34: services.b.vip: 10.96.0.5 is taken by service 'a'",
        "t.yaml:8:34: services.c.vip: 10.96.0.10 is taken by the cluster DNS",
    ]


def test_node_port_out_of_range_duplicate_and_on_a_cluster_ip_service():
    found = problems(
        "  a: {type: NodePort, selector: {app: web}, ports: [{port: 80, node_port: 30080}]}\n"
        "  b: {type: NodePort, selector: {app: web}, ports: [{port: 80, node_port: 30080}]}\n"
        "  c: {type: NodePort, selector: {app: web}, ports: [{port: 80, node_port: 8080}]}\n"
        "  d: {selector: {app: web}, ports: [{port: 80, node_port: 30090}]}\n"
    )
    assert found == [
        "t.yaml:7:75: services.b.ports.0.node_port: node port 30080 is taken by service 'a'",
        "t.yaml:8:75: services.c.ports.0.node_port: node port 8080 is out of range 30000-32767",
        "t.yaml:9:59: services.d.ports.0.node_port: a node port needs `type: NodePort`",
    ]


def test_one_node_port_for_tcp_and_udp_of_one_service_is_allowed():
    parse_topology(
        BASE + "  dns:\n    type: NodePort\n    selector: {app: web}\n    ports:\n"
        "      - {name: tcp, port: 53, node_port: 30053}\n"
        "      - {name: udp, port: 53, protocol: UDP, node_port: 30053}\n"
    )


def test_target_port_name_that_no_pod_declares():
    found = problems("  web: {selector: {app: web}, ports: [{port: 80, target_port: https}]}\n")
    assert found == [
        "t.yaml:6:63: services.web.ports.0.target_port: no TCP port named 'https' is "
        "declared by the pods its selector picks"
    ]


def test_several_ports_need_names():
    found = problems("  web: {selector: {app: web}, ports: [{port: 80}, {name: b, port: 80}]}\n")
    assert found == [
        "t.yaml:6:39: services.web.ports.0: a service with several ports must name each of them",
        "t.yaml:6:67: services.web.ports.1.port: port 80/TCP is listed twice",
    ]


def test_a_selector_matching_nothing_is_allowed():
    topology = parse_topology(BASE + "  none: {selector: {app: nothing}, ports: [{port: 80}]}\n")
    assert "none" in topology.services


def test_unknown_proxy_mode():
    text = "name: t\nnodes: {node-1: {}}\ncluster: {proxy_mode: userspace}\n"
    with pytest.raises(TopologyError) as caught:
        parse_topology(text, source="t.yaml")
    (problem,) = caught.value.problems
    assert str(problem).startswith(
        "t.yaml:3:23: cluster.proxy_mode: must be 'iptables', 'nftables' or 'ipvs'"
    )


def test_two_pods_with_one_host_port_on_a_node():
    text = (
        "name: t\nnodes: {node-1: {}}\npods:\n"
        "  a: {node: node-1, ports: [{port: 80, host_port: 8080}]}\n"
        "  b: {node: node-1, ports: [{port: 81, host_port: 8080}]}\n"
    )
    with pytest.raises(TopologyError) as caught:
        parse_topology(text, source="t.yaml")
    assert "host port 8080/TCP on node 'node-1' is taken by pod 'a'" in str(caught.value)


def test_cli_validate_exits_2_naming_the_place(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BASE + "  web: {selector: {app: web}, vip: 10.1.0.5, ports: [{port: 80}]}\n")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}:6:36" in result.output and "outside the service CIDR" in result.output
