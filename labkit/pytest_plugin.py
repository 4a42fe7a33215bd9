"""The pytest front door: `@pytest.mark.topology("name")` and the `lab` fixture.

One lab per topology per session, shared by every test that names it; all of
them are removed at the end of the session (also after Ctrl-C), unless
`--lab-keep`. `--lab-reuse` attaches to a lab of the same name that is up.
Without a Docker engine the lab tests skip, unless LABKIT_REQUIRE_DOCKER=1,
which makes that a failure (CI sets it).
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path
from typing import Any

import pytest

from labkit.errors import LabkitError
from labkit.lab import Lab, lab_name_for
from labkit.runtime.docker import DockerRuntime, engine_available
from labkit.topology.loader import load_topology, resolve_topology_path


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("labkit")
    group.addoption("--lab-keep", action="store_true", help="leave the labs up after the run")
    group.addoption("--lab-reuse", action="store_true", help="attach to a running lab of the same name")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "topology(name): the lab topology (a name under topologies/ or a path)")
    config.addinivalue_line("markers", "needs(feature): skip unless the host kernel has the feature")


class LabPool:
    """The session's labs, by topology file."""

    def __init__(self, config: pytest.Config) -> None:
        self.keep = bool(config.getoption("--lab-keep"))
        self.reuse = bool(config.getoption("--lab-reuse"))
        self.labs: dict[Path, Lab] = {}
        self.failures: dict[Path, BaseException] = {}
        self._runtime: DockerRuntime | None = None
        self._engine_checked = False

    @property
    def runtime(self) -> DockerRuntime:
        if not self._engine_checked:
            available, reason = engine_available()
            self._engine_checked = True
            if not available:
                if os.environ.get("LABKIT_REQUIRE_DOCKER") == "1":
                    pytest.fail(f"LABKIT_REQUIRE_DOCKER=1 but {reason}", pytrace=False)
                pytest.skip(reason)
            self._runtime = DockerRuntime()
        if self._runtime is None:
            pytest.skip("no Docker engine")
        return self._runtime

    def get(self, path: Path) -> Lab:
        if path in self.labs:
            return self.labs[path]
        if path in self.failures:
            pytest.fail(f"lab {path.name} failed to come up earlier: {self.failures[path]}", pytrace=False)
        runtime = self.runtime
        topology = load_topology(path)
        name = lab_name_for(topology)
        try:
            if self.reuse and name in runtime.lab_names():
                lab = Lab.attach(name, runtime)
            else:
                lab = Lab.up(topology, runtime=runtime)
                lab.source = str(path)
        except LabkitError as exc:
            self.failures[path] = exc
            raise
        self.labs[path] = lab
        return lab

    def close(self) -> None:
        labs, self.labs = self.labs, {}
        if self.keep:
            return
        for lab in labs.values():
            lab.down()


_POOLS: list[LabPool] = []


@atexit.register
def _close_pools() -> None:
    # Ctrl-C can skip fixture teardown; labs must not outlive the run.
    for pool in _POOLS:
        pool.close()


@pytest.fixture(scope="session")
def lab_pool(pytestconfig: pytest.Config) -> Any:
    pool = LabPool(pytestconfig)
    _POOLS.append(pool)
    yield pool
    pool.close()


@pytest.fixture
def lab(request: pytest.FixtureRequest, lab_pool: LabPool) -> Lab:
    """The lab of the test's `@pytest.mark.topology(...)`, shared across the session."""
    marker = request.node.get_closest_marker("topology")
    if marker is None or not marker.args:
        pytest.fail('the `lab` fixture needs @pytest.mark.topology("name-or-path")', pytrace=False)
    path = resolve_topology_path(marker.args[0], Path(request.node.path).parent).resolve()
    return lab_pool.get(path)


@pytest.fixture
def measure(record_property: Any) -> Any:
    """`measure("name", value, unit)`: recorded in JUnit XML and printed with -s."""

    def record(name: str, value: float, unit: str = "") -> float:
        record_property(name, value)
        print(f"[labkit] {name} = {value:.4g} {unit}".rstrip())
        return value

    return record
