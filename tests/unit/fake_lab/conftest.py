"""What the unit tests of a lab on the fake runtime share: a host with every feature,
a fresh fake runtime, and a lab already up on it from the module's `topology_text`."""

from __future__ import annotations

from typing import Any

import pytest

from labkit import Lab, parse_topology
from labkit.runtime.fake import FakeRuntime


@pytest.fixture(autouse=True)
def fake_host(host_has_everything: dict[str, Any]) -> None:
    """Every feature present, without probing this machine (tests/unit/conftest.py)."""


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture
def lab(runtime: FakeRuntime, topology_text: str) -> Lab:
    """Up on the fake, its calls forgotten: a test sees only what it asked for."""
    lab = Lab.up(parse_topology(topology_text), runtime=runtime)
    runtime.reset()
    return lab
