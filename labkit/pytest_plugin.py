"""The pytest front door: `@pytest.mark.topology("name")` and the `lab` fixture.

One lab per topology per session, shared by every test that names it, and
taken down after the last of them (also on Ctrl-C and at exit), unless
`--lab-keep`. `--lab-reuse` attaches to a lab of the same name that is up.
Without a Docker engine the lab tests skip, unless LABKIT_REQUIRE_DOCKER=1,
which makes that a failure (CI sets it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from labkit.errors import LabkitError
from labkit.faults import Faults
from labkit.lab import Lab, lab_name_for
from labkit.runtime.docker import DockerRuntime, engine_available
from labkit.runtime.select import HOSTS_ENV, NeedsL2, hosts_file, runtime_for
from labkit.topology.loader import load_topology, resolve_topology_path


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("labkit")
    group.addoption("--lab-keep", action="store_true", help="leave the labs up after the run")
    group.addoption("--lab-reuse", action="store_true", help="attach to a running lab of the same name")
    group.addoption("--lab-hosts", default=None, help="hosts file: spread each lab over its Docker hosts")


POOL_KEY = pytest.StashKey["LabPool"]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "topology(name): the lab topology (a name under topologies/ or a path)")
    pool = LabPool(config)
    config.stash[POOL_KEY] = pool


def _topology_path(item: pytest.Item) -> Path | None:
    marker = item.get_closest_marker("topology")
    if marker is None or not marker.args or "lab" not in getattr(item, "fixturenames", ()):
        return None
    try:
        return resolve_topology_path(marker.args[0], Path(item.path).parent).resolve()
    except LabkitError:
        return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Count the tests of each lab, so a lab goes down after its last test."""
    pool = config.stash[POOL_KEY]
    for item in items:
        path = _topology_path(item)
        if path is not None:
            pool.remaining[path] = pool.remaining.get(path, 0) + 1


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    yield
    path = _topology_path(item)
    if path is not None:
        item.config.stash[POOL_KEY].finished(path)


class LabPool:
    """The session's labs, by topology file."""

    def __init__(self, config: pytest.Config) -> None:
        self.keep = bool(config.getoption("--lab-keep"))
        self.reuse = bool(config.getoption("--lab-reuse"))
        self.hosts = hosts_file(config.getoption("--lab-hosts"))
        if self.hosts:  # what the CLI (under test too) reads: its labs go there as well
            os.environ[HOSTS_ENV] = self.hosts
        self.labs: dict[Path, Lab] = {}
        self.failures: dict[Path, BaseException] = {}
        self.remaining: dict[Path, int] = {}
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
        topology = load_topology(path)
        name = lab_name_for(topology)
        try:
            runtime = runtime_for(self.hosts, topology, source=str(path), local=self.runtime)
        except NeedsL2 as refused:  # the refusal is the behaviour: this lab cannot apply here
            pytest.skip(f"needs true L2 across hosts: {refused}")
        try:
            if self.reuse and name in runtime.lab_names():
                lab = Lab.attach(name, runtime)
            else:
                lab = Lab.up(str(path), runtime=runtime, keep=self.keep)
        except LabkitError as exc:
            self.failures[path] = exc
            raise
        self.labs[path] = lab
        return lab

    def finished(self, path: Path) -> None:
        """One test of the lab at `path` is done; the last one takes the lab down."""
        self.remaining[path] = self.remaining.get(path, 1) - 1
        if self.remaining[path] <= 0 and path in self.labs and not self.keep:
            self.labs.pop(path).down()

    def close(self) -> None:
        labs, self.labs = self.labs, {}
        if self.keep:
            return
        for lab in labs.values():
            lab.down()


@pytest.fixture(scope="session")
def lab_pool(pytestconfig: pytest.Config) -> Any:
    return pytestconfig.stash[POOL_KEY]


@pytest.fixture
def lab(request: pytest.FixtureRequest, lab_pool: LabPool) -> Lab:
    """The lab of the test's `@pytest.mark.topology(...)`, shared across the session."""
    marker = request.node.get_closest_marker("topology")
    if marker is None or not marker.args:
        pytest.fail('the `lab` fixture needs @pytest.mark.topology("name-or-path")', pytrace=False)
    path = resolve_topology_path(marker.args[0], Path(request.node.path).parent).resolve()
    return lab_pool.get(path)


def pytest_unconfigure(config: pytest.Config) -> None:
    # Runs after Ctrl-C and failures too: labs must not outlive the run.
    config.stash[POOL_KEY].close()


@pytest.fixture
def measure(record_property: Any) -> Any:
    """`measure("name", value, unit)`: recorded in JUnit XML and printed with -s."""

    def record(name: str, value: float, unit: str = "") -> float:
        record_property(name, value)
        print(f"[labkit] {name} = {value:.4g} {unit}".rstrip())
        return value

    return record


@pytest.fixture
def faults(lab: Lab) -> Any:
    """`lab.faults` for one test: every fault the test set is reverted when it ends."""
    before = {fault.id for fault in lab.faults.active}
    yield lab.faults
    injected: Faults = lab.faults
    injected.revert_all([fault for fault in injected.active if fault.id not in before])
