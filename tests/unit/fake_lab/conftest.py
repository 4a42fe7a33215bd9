"""What the unit tests of a lab on the fake runtime share: a host with every feature,
a fresh fake runtime, and a lab already up on it from the module's `topology_text`."""

from __future__ import annotations

from typing import Any

import pytest

from labkit import Lab, parse_topology
from labkit.runtime import features
from labkit.runtime.fake import FakeRuntime


@pytest.fixture(autouse=True)
def host_has_everything(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> dict[str, Any]:
    """Every kernel feature present, and the state files in a folder of the test's own."""
    table = {name: {"ok": True, "detail": ""} for name in features.PROBES}
    monkeypatch.setattr(features, "kernel_features", lambda: table)
    monkeypatch.setattr(features, "engine_features", lambda: {"l2-underlay": {"ok": True}})
    monkeypatch.setenv("LABKIT_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("LABKIT_NAME_PREFIX", raising=False)
    return table


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture
def lab(runtime: FakeRuntime, topology_text: str) -> Lab:
    """Up on the fake, its calls forgotten: a test sees only what it asked for."""
    lab = Lab.up(parse_topology(topology_text), runtime=runtime)
    runtime.reset()
    return lab
