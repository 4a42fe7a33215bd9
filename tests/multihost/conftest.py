"""One sandbox of Docker hosts for the whole multi-host part, up once, always torn down.

Torn down by the fixture's finalizer, and again (idempotent) at unconfigure,
which pytest runs after Ctrl-C too. Where dockerd or network namespaces are
unusable, or there is no node image to ship, the tests skip with the reason;
with LABKIT_REQUIRE_DOCKER=1 (CI) that is a failure instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from labkit.errors import LabkitError
from labkit.runtime.docker import DockerRuntime, engine_available
from labkit.runtime.sandbox import Sandbox, sandbox_down, sandbox_up, usable

SANDBOX = "test"
HOSTS = 3
_started: list[str] = []


def unusable(reason: str) -> None:
    if os.environ.get("LABKIT_REQUIRE_DOCKER") == "1":
        pytest.fail(f"LABKIT_REQUIRE_DOCKER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def local() -> DockerRuntime:
    available, reason = engine_available()
    if not available:
        unusable(reason)
    runtime = DockerRuntime()
    try:
        runtime.node_image()
    except LabkitError as error:
        unusable(f"no node image to ship into the sandbox: {error}")
    return runtime


@pytest.fixture(scope="session")
def sandbox(local: DockerRuntime) -> Iterator[Sandbox]:
    ok, reason = usable()
    if not ok:
        unusable(reason)
    _started.append(SANDBOX)
    made = sandbox_up(HOSTS, SANDBOX)
    try:
        yield made
    finally:
        sandbox_down(SANDBOX)


def pytest_unconfigure(config: pytest.Config) -> None:
    for name in _started:
        sandbox_down(name)
