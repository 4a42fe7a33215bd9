"""One engine client per process and environment; a failure is never remembered."""

from __future__ import annotations

import os

import docker
import pytest

from labkit.errors import EngineUnavailable
from labkit.runtime import docker as runtime_docker


class Answering:
    pings = 0

    def ping(self) -> bool:
        Answering.pings += 1
        return True


@pytest.fixture
def engines(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The DOCKER_HOST of each client made (the SDK's from_env, counted, not called)."""
    made: list[str] = []

    def from_env(**_: object) -> Answering:
        made.append(os.environ.get("DOCKER_HOST", ""))
        return Answering()

    monkeypatch.setattr(runtime_docker, "_connected", {})
    monkeypatch.setattr(runtime_docker.docker, "from_env", from_env)
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/one.sock")
    return made


def test_one_client_per_environment(engines: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    first = runtime_docker.connect()
    assert runtime_docker.connect() is first
    assert runtime_docker.DockerRuntime().client is first  # every runtime shares it
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/two.sock")
    assert runtime_docker.connect() is not first
    assert engines == ["unix:///run/one.sock", "unix:///run/two.sock"]


def test_a_failure_is_not_remembered(engines: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(**_: object) -> Answering:
        raise docker.errors.DockerException("connection refused")

    answered = runtime_docker.docker.from_env
    monkeypatch.setattr(runtime_docker.docker, "from_env", refused)
    with pytest.raises(EngineUnavailable, match="connection refused"):
        runtime_docker.connect()
    monkeypatch.setattr(runtime_docker.docker, "from_env", answered)
    assert isinstance(runtime_docker.connect(), Answering)  # the engine is back: asked again


def test_engine_available_asks_the_engine_each_time(engines: list[str]) -> None:
    before = Answering.pings
    assert runtime_docker.engine_available()[0] and runtime_docker.engine_available()[0]
    assert Answering.pings - before == 3  # one to connect, then one per question
    assert len(engines) == 1
