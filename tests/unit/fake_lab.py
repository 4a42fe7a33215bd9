"""What the unit tests of a lab on the fake runtime share: a host with every feature, the calls."""

from __future__ import annotations

from typing import Any

import pytest

from labkit.runtime import features
from labkit.runtime.fake import FakeRuntime


def pretend_host_has_everything(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> dict[str, Any]:
    """Every kernel feature present, and the state files in a folder of the test's own."""
    table = {name: {"ok": True, "detail": ""} for name in features.PROBES}
    monkeypatch.setattr(features, "kernel_features", lambda: table)
    monkeypatch.setattr(features, "engine_features", lambda: {"l2-underlay": {"ok": True}})
    monkeypatch.setenv("LABKIT_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("LABKIT_NAME_PREFIX", raising=False)
    return table


def execs_on(runtime: FakeRuntime, container: str) -> list[str]:
    return [command for where, command in runtime.execs if where == container]
