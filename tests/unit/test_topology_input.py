"""Bad topology input is refused with a located message (exit code 2), never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from topology_problems import problems

from labkit.errors import TopologyError
from labkit.topology import load_topology, parse_topology

BASE = "name: t\nnodes:\n  node-1: {}\n"


def file_problems(tmp_path: Path, content: bytes) -> list[str]:
    path = tmp_path / "t.yaml"
    path.write_bytes(content)
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    assert caught.value.exit_code == 2
    return [str(problem) for problem in caught.value.problems]


@pytest.mark.parametrize(
    ("content", "where", "says"),
    [
        (
            "name: t\n# caf\xe9\n".encode("latin-1"),
            "t.yaml:2:6:",
            "not UTF-8 text: byte 0xe9 at offset 13",
        ),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "t.yaml:1:1:", "not UTF-8 text: byte 0x89 at offset 0"),
        (BASE.encode("utf-16"), "t.yaml:1:1:", "not UTF-8 text"),
        (b"name: t\nnodes:\n  node-1: {}\x00\n", "t.yaml:3:13:", "NUL byte at offset 27"),
        (b"name: t\nnodes:\n  node-1: {}\x07\n", "t.yaml:3:13:", "character #x0007"),
    ],
    ids=["latin-1", "binary", "utf-16", "nul", "control-character"],
)
def test_a_file_that_is_not_utf8_text_is_refused_with_its_place(
    tmp_path: Path, content: bytes, where: str, says: str
):
    (message,) = file_problems(tmp_path, content)
    assert where in message and says in message, message


def test_a_utf8_bom_is_fine(tmp_path: Path):
    path = tmp_path / "t.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + BASE.encode())
    assert load_topology(path).name == "t"


def test_a_directory_is_not_a_topology_file(tmp_path: Path):
    (tmp_path / "d.yaml").mkdir()
    with pytest.raises(TopologyError, match="cannot read"):
        load_topology(tmp_path / "d.yaml")


def test_a_pod_namespace_must_be_a_dns_label():
    (message,) = problems(BASE + "pods:\n  a: {node: node-1, namespace: Bad_NS}\n")
    assert message.startswith("t.yaml:5:32: pods.a.namespace:")
    assert "'Bad_NS' must be an RFC 1123 DNS label" in message


def test_messages_keep_the_pattern_with_its_brackets():
    (message,) = problems(BASE.replace("name: t", "name: Bad_Lab"))
    assert "(pattern [a-z0-9]([-a-z0-9]*[a-z0-9])?)" in message


def test_namespaces_may_be_63_characters_not_64():
    ok = "a" * 63
    topology = parse_topology(BASE + f"pods:\n  a: {{node: node-1, namespace: {ok}}}\n")
    assert topology.pods["a"].namespace == ok
    (message,) = problems(BASE + f"namespaces:\n  {ok}b: {{}}\n")
    assert "is 64 characters long (at most 63)" in message and "bad name" in message


@pytest.mark.parametrize(
    ("extra", "where", "says"),
    [
        ("services:\n  1web: {ports: [{port: 80}]}\n", "services.1web", "RFC 1035 DNS label"),
        (
            "services:\n  web: {namespace: Prod, ports: [{port: 80}]}\n",
            "services.web.namespace",
            "RFC 1123",
        ),
        ("policies:\n  p: {namespace: a_b}\n", "policies.p.namespace", "RFC 1123"),
        (
            "pods:\n  a: {node: node-1, labels: {'app name': web}}\n",
            "pods.a.labels.app name",
            "label key",
        ),
        (
            "pods:\n  a: {node: node-1, labels: {app: 'web/1'}}\n",
            "pods.a.labels.app",
            "label value",
        ),
        (
            "pods:\n  a: {node: node-1, labels: {version: 1}}\n",
            "pods.a.labels.version",
            "got 1; quote it",
        ),
        (
            "pods:\n  a: {node: node-1, ports: [{name: very-long-port-name, port: 80}]}\n",
            "pods.a.ports.0.name",
            "at most 15",
        ),
        (
            "pods:\n  a: {node: node-1, ports: [{name: '80', port: 80}]}\n",
            "pods.a.ports.0.name",
            "one letter",
        ),
        (
            "policies:\n  p:\n    pod_selector: {match_expressions: [{key: 'a b', operator: Exists}]}\n",
            "policies.p.pod_selector.match_expressions.0.key",
            "label key",
        ),
    ],
)
def test_every_name_follows_its_kubernetes_rule(extra: str, where: str, says: str):
    found = problems(BASE + extra)
    assert any(where + ":" in m and says in m for m in found), found


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        ("", "t.yaml", "the file is empty"),
        ("# only a comment\n", "t.yaml", "the file is empty"),
        ("- name: t\n", "t.yaml:1:1", "a topology is a mapping"),
        ("hello\n", "t.yaml:1:1", "a topology is a mapping"),
        ("name: t\nnodes:\n\tnode-1: {}\n", "t.yaml:3:1", "not valid YAML: found character '\\t'"),
        ("name: t\nnodes: [node-1]\n", "t.yaml:2:8", "valid dictionary (got a list)"),
        ("name: t\nnodes:\n", "t.yaml:2:7", "valid dictionary (got nothing)"),
        ("name: yes\nnodes:\n  node-1: {}\n", "t.yaml:1:7", "(got True; quote it"),
        ("name: t\nnodes:\n  1: {}\n", "t.yaml:3:6", "bad name"),
        ("name: t\nname: u\nnodes:\n  node-1: {}\n", "t.yaml:2:1", "duplicate name"),
        (BASE + "colour: blue\n", "t.yaml:4:9", "unknown field"),
        (BASE + "cluster: {pod_cidr: 10.244.0.1/16}\n", "t.yaml:4:21", "got '10.244.0.1/16'"),
        (BASE + "cluster: {pod_cidr: fd00::/64}\n", "t.yaml:4:21", "not a valid IPv4 network"),
        (BASE + "cluster: {node_prefix: .inf}\n", "t.yaml:4:24", "finite number"),
        (
            BASE + "pods:\n  a: {node: node-1, ports: [{port: 99999999999999999999}]}\n",
            "t.yaml:5:36",
            "less than or equal to 65535",
        ),
        (BASE + "cluster: {backend: bgp, bgp: {asn: 99999999999999999999}}\n", "t.yaml:4:", "asn"),
        (
            "name: t\nnetworks:\n  a: {subnet: 192.168.0.0/24}\n  b: {subnet: 192.168.0.128/25}\n"
            "nodes:\n  node-1: {networks: [a, b]}\n",
            "t.yaml:4:15",
            "overlaps networks.a.subnet",
        ),
        (BASE + "ingress: {nodes: [node-9]}\n", "t.yaml:4:19", "unknown node 'node-9'"),
        (
            "name: t\nnetworks:\n  a: {driver: ipvlan}\nnodes:\n  node-1: {}\n",
            "t.yaml:3:15",
            "networks.a.driver: must be 'bridge' or 'macvlan'",
        ),
        ("name: t\nnodes:\n  node-1: &x {roles: [*x]}\n", "t.yaml:3:11", "refers to itself"),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 20 else None,
)
def test_broken_files_get_a_located_message(text: str, where: str, says: str):
    found = problems(text)
    assert any(m.startswith(where) and says in m for m in found), found


def test_an_alias_bomb_is_refused_quickly():
    lines = [BASE, "x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    (message,) = problems("\n".join(lines) + "\n")
    assert "aliases expand too far" in message
