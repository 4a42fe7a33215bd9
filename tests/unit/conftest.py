"""Every unit test keeps lab state in a folder of its own: a lab brought up on the
fake runtime must never leave a state file among the user's real labs."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def own_state_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LABKIT_STATE_DIR", str(tmp_path / "labkit-state"))
