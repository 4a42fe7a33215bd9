"""`labkit up -f` refuses bad manifests before anything is created (no engine needed)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from labkit.cli import app

ROOT = Path(__file__).parent.parent.parent


def test_up_with_a_bad_manifest_exits_2_naming_file_line_and_field(monkeypatch):
    def never(*_args, **_kwargs):
        raise AssertionError("nothing may be created")

    monkeypatch.setattr("labkit.lab.Lab.up", never)
    bad = ROOT / "tests" / "data" / "policies" / "bad-policies.yaml"
    result = CliRunner().invoke(
        app, ["up", str(ROOT / "topologies" / "policy.yaml"), "-f", str(bad)]
    )
    assert result.exit_code == 2, result.output
    assert f"{bad}:9: NetworkPolicy/y/bad-cidr: spec.ingress.0.from.0.ipBlock.cidr" in result.output


def test_get_knows_its_kinds():
    result = CliRunner().invoke(app, ["get", "deployments"])
    assert result.exit_code == 2
    assert "labkit get knows" in result.output


def test_up_tells_what_it_takes_but_does_not_emulate_before_creating_anything(
    monkeypatch, tmp_path
):
    class Stop(Exception):
        pass

    def stop(*_args, **_kwargs):
        raise Stop

    monkeypatch.setattr("labkit.runtime.select.runtime_for", stop)
    manifest = tmp_path / "app.yaml"
    manifest.write_text(
        """\
apiVersion: v1
kind: Pod
metadata: {name: db}
spec:
  containers:
  - name: postgres
    image: postgres
    ports: [{containerPort: 5432}]
    readinessProbe: {exec: {command: [pg_isready]}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: m, image: migrate}]
"""
    )
    result = CliRunner().invoke(
        app, ["up", str(ROOT / "topologies" / "policy.yaml"), "-f", str(manifest)]
    )
    assert isinstance(result.exception, Stop), result.output
    assert "ignored (run-to-completion pods are not emulated): Job/default/migrate" in result.output
    assert f"note: {manifest}:9: Pod/default/db: spec.containers.0.readinessProbe: exec" in (
        result.output.replace("\n", " ")
    )
