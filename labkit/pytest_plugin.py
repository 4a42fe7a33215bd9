"""The pytest front door: `@pytest.mark.topology("name")` and the `lab` fixture.

`@pytest.mark.topology("name", manifests=["k8s/app.yaml"])` adds Kubernetes
manifests (paths relative to the test file) to the topology; each distinct
set of manifests is a lab of its own.

One lab per topology per session, shared by every test that names it, and
taken down after the last of them (also on Ctrl-C and at exit), unless
`--lab-keep`. `--lab-reuse` attaches to a lab of the same name that is up.
Without a Docker engine the lab tests skip, unless LABKIT_REQUIRE_DOCKER=1,
which makes that a failure (CI sets it). The `capture` fixture keeps the pcap
files of failed tests under --lab-pcap-dir, named in the JUnit XML.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.core.capture import Capture
from labkit.errors import LabkitError
from labkit.faults import Faults
from labkit.lab import Lab, lab_name_for
from labkit.runtime.docker import DockerRuntime, engine_available
from labkit.runtime.select import HOSTS_ENV, NeedsL2, hosts_file, runtime_for
from labkit.topology.kube.manifests import add_manifests
from labkit.topology.loader import load_topology, resolve_topology_path

LabKey = tuple[Path, tuple[Path, ...]]  # the topology file, and the manifests added to it


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("labkit")
    group.addoption("--lab-keep", action="store_true", help="leave the labs up after the run")
    group.addoption(
        "--lab-reuse", action="store_true", help="attach to a running lab of the same name"
    )
    group.addoption(
        "--lab-pcap-dir",
        default="test-results/pcap",
        help="where the `capture` fixture keeps failed tests' pcaps",
    )
    group.addoption(
        "--lab-hosts", default=None, help="hosts file: spread each lab over its Docker hosts"
    )


POOL_KEY = pytest.StashKey["LabPool"]()
REPORTS_KEY = pytest.StashKey[dict[str, pytest.TestReport]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "topology(name, manifests=[...]): the lab topology (a name under topologies/ or a path), "
        "plus Kubernetes manifests (files or directories, relative to the test file)",
    )
    pool = LabPool(config)
    config.stash[POOL_KEY] = pool


def _marker_key(marker: pytest.Mark, item: Any) -> LabKey:
    here = Path(item.path).parent
    ref = marker.args[0]
    nearby = here / str(ref)  # a relative path is taken from the test file first
    path = resolve_topology_path(nearby if nearby.is_file() else ref, here).resolve()
    manifests = tuple((here / m).resolve() for m in marker.kwargs.get("manifests", ()))
    return path, manifests


def _topology_path(item: pytest.Item) -> LabKey | None:
    marker = item.get_closest_marker("topology")
    if marker is None or not marker.args or "lab" not in getattr(item, "fixturenames", ()):
        return None
    try:
        return _marker_key(marker, item)
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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Each phase's report on the item, so fixtures can tell a failed test at teardown."""
    outcome = yield
    report = outcome.get_result()
    item.stash.setdefault(REPORTS_KEY, {})[report.when] = report


class LabPool:
    """The session's labs, by topology file."""

    def __init__(self, config: pytest.Config) -> None:
        self.keep = bool(config.getoption("--lab-keep"))
        self.reuse = bool(config.getoption("--lab-reuse"))
        self.hosts = hosts_file(config.getoption("--lab-hosts"))
        if self.hosts:  # what the CLI (under test too) reads: its labs go there as well
            os.environ[HOSTS_ENV] = self.hosts
        self.labs: dict[LabKey, Lab] = {}
        self.failures: dict[LabKey, BaseException] = {}
        self.remaining: dict[LabKey, int] = {}
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

    def get(self, key: LabKey) -> Lab:
        if key in self.labs:
            return self.labs[key]
        path, manifests = key
        if key in self.failures:
            pytest.fail(
                f"lab {path.name} failed to come up earlier: {self.failures[key]}", pytrace=False
            )
        try:
            topology = load_topology(path)
            name = lab_name_for(topology)
            given: Any = str(path)
            if manifests:  # a lab per set of manifests: its name says which
                given = add_manifests(topology, list(manifests)).topology
                name += "-" + hashlib.sha256(repr(manifests).encode()).hexdigest()[:6]
            try:
                runtime = runtime_for(self.hosts, topology, source=str(path), local=self.runtime)
            except NeedsL2 as refused:  # the refusal is the behaviour: this lab cannot apply here
                pytest.skip(f"needs true L2 across hosts: {refused}")
            if self.reuse and name in runtime.lab_names():
                lab = Lab.attach(name, runtime)
            else:
                lab = Lab.up(given, runtime=runtime, keep=self.keep, name=name)
        except LabkitError as exc:
            self.failures[key] = exc
            raise
        self.labs[key] = lab
        return lab

    def finished(self, key: LabKey) -> None:
        """One test of the lab of `key` is done; the last one takes the lab down."""
        self.remaining[key] = self.remaining.get(key, 1) - 1
        if self.remaining[key] <= 0 and key in self.labs and not self.keep:
            self.labs.pop(key).down()

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
    return lab_pool.get(_marker_key(marker, request.node))


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


@pytest.fixture
def capture(request: pytest.FixtureRequest, lab: Lab, tmp_path: Path) -> Iterator[Any]:
    """`capture("web", "client", iface=None, filter="tcp port 8080")`: tcpdump on those
    nodes or pods until the test ends. A failed test's pcap files are kept in
    --lab-pcap-dir/<test>/ and their paths recorded as JUnit properties `pcap`."""
    running: list[tuple[Capture, Path]] = []

    def start(*names: str, iface: str | None = None, filter: str = "") -> list[Capture]:
        started = []
        for name in names:
            path = tmp_path / f"{name}.pcap"
            one = Capture(
                lab.endpoint(name), path.open("wb"), iface=iface, filter_words=filter.split()
            )
            running.append((one, path))
            started.append(one.start())
        return started

    yield start
    for one, _ in running:
        one.stop()
        one.sink.close()
    reports = request.node.stash.get(REPORTS_KEY, {})
    if not running or not any(report.failed for report in reports.values()):
        return
    folder = Path(request.config.getoption("--lab-pcap-dir"))
    folder = (
        request.config.invocation_params.dir
        / folder
        / re.sub(r"[^\w.-]+", "_", request.node.nodeid)
    )
    folder.mkdir(parents=True, exist_ok=True)
    for _, path in running:
        kept = folder / path.name
        shutil.move(path, kept)
        request.node.user_properties.append(("pcap", str(kept)))
