"""Readiness over every container, as the kubelet decides it: the model, the manifest
conversion (probes labkit cannot run are noted, not refused), and the probe command,
run here against local sockets."""

from __future__ import annotations

import io
import socket
import subprocess
from ipaddress import IPv4Address

from labkit.dataplane.readiness import probe_command
from labkit.topology import parse_topology
from labkit.topology.kube import load_manifests
from labkit.topology.model import Pod

INFRA = "name: t\nnodes:\n  node-1: {}\n"


def pod_of(containers: str):
    text = f"""\
apiVersion: v1
kind: Pod
metadata: {{name: p}}
spec:
  containers:
{containers}"""
    report = load_manifests(["-"], parse_topology(INFRA), stdin=io.StringIO(text))
    return report.topology.pods["p"], report.notes()


def test_a_single_probe_in_a_topology_file_is_still_taken():
    topology = parse_topology(INFRA + "pods:\n  a: {readiness: {kind: tcp, port: 80}}\n  b: {}\n")
    assert [probe.port for probe in topology.pods["a"].readiness] == [80]
    assert topology.pods["b"].readiness == []
    two = Pod.model_validate(
        {"node": "node-1", "readiness": [{"kind": "tcp", "port": 1}, {"kind": "http", "port": 2}]}
    )
    assert [probe.kind for probe in two.readiness] == ["tcp", "http"]


def test_every_containers_probe_counts_and_one_without_a_probe_is_ready():
    pod, notes = pod_of("""\
  - name: web
    image: web
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {httpGet: {path: /healthz, port: http}}
  - name: sidecar
    image: envoy
  - name: metrics
    image: exporter
    ports: [{containerPort: 9100}]
    readinessProbe: {tcpSocket: {port: 9100}}
""")
    assert [(probe.kind, probe.port) for probe in pod.readiness] == [
        ("http", "http"),
        ("tcp", 9100),
    ]
    assert notes == []


def test_exec_and_grpc_probes_are_noted_and_their_containers_count_as_ready():
    pod, notes = pod_of("""\
  - name: db
    image: postgres
    ports: [{containerPort: 5432}]
    readinessProbe: {exec: {command: [pg_isready]}}
  - name: api
    image: api
    ports: [{containerPort: 9000}]
    readinessProbe: {grpc: {port: 9000}}
  - name: web
    image: web
    ports: [{containerPort: 8080}]
    readinessProbe: {tcpSocket: {port: 8080}}
""")
    assert [probe.port for probe in pod.readiness] == [8080]
    exec_note, grpc_note = notes
    assert exec_note.startswith("note: <stdin>:")
    assert "Pod/default/p: spec.containers.0.readinessProbe: exec probe not run" in exec_note
    assert "container 'db' counts as ready" in exec_note
    assert "spec.containers.1.readinessProbe: grpc probe not run" in grpc_note


def test_liveness_and_startup_probes_are_ignored_silently():
    pod, notes = pod_of("""\
  - name: web
    image: web
    ports: [{containerPort: 8080}]
    livenessProbe: {exec: {command: ["true"]}}
    startupProbe: {httpGet: {port: 8080}}
""")
    assert pod.readiness == [] and notes == []


def _passes(command: str) -> bool:
    return subprocess.run(["bash", "-c", command], capture_output=True).returncode == 0


def test_the_probe_command_passes_only_when_every_probe_does():
    with (
        socket.create_server(("127.0.0.1", 0)) as one,
        socket.create_server(("127.0.0.1", 0)) as other,
    ):
        open_ports = [one.getsockname()[1], other.getsockname()[1]]
        probes = [{"kind": "tcp", "port": port, "failure_threshold": 1} for port in open_ports]
        ready = Pod.model_validate({"node": "n", "readiness": probes})
        with socket.socket() as unbound:  # a port nothing listens on
            unbound.bind(("127.0.0.1", 0))
            closed = unbound.getsockname()[1]
        one_down = Pod.model_validate(
            {"node": "n", "readiness": [*probes, {**probes[0], "port": closed}]}
        )
        loopback = IPv4Address("127.0.0.1")
        assert _passes(probe_command("p", ready, loopback))
        assert not _passes(probe_command("p", one_down, loopback))
        just_one = Pod.model_validate({"node": "n", "readiness": probes[0]})
        assert _passes(probe_command("p", just_one, loopback))
