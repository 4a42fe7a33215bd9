"""Every unit test keeps lab state in a folder of its own: a lab brought up on the
fake runtime must never leave a state file among the user's real labs. A lab on
the fake runtime asks for `host_has_everything`: no probe of the real host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def own_state_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LABKIT_STATE_DIR", str(tmp_path / "labkit-state"))


@pytest.fixture
def host_has_everything(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Every kernel and engine feature present, without probing this machine, and no
    name prefix from the caller's environment (names are asserted)."""
    from labkit.runtime import features

    table = {name: {"ok": True, "detail": ""} for name in features.PROBES}
    monkeypatch.setattr(features, "kernel_features", lambda: table)
    monkeypatch.setattr(features, "engine_features", lambda: {"l2-underlay": {"ok": True}})
    monkeypatch.delenv("LABKIT_NAME_PREFIX", raising=False)
    return table
