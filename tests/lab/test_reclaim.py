"""Killed and interrupted runs: what they leave, and who cleans it up.

- `kill -9` of a pytest run (after its lab is up) or of `labkit up` (half-way):
  the next `Lab.up` of that name reclaims the lab, saying so in one line;
  `labkit down --stale` removes such labs.
- A lab kept on purpose (`labkit up` that finished) is never reclaimed.
- Ctrl-C during `labkit up`, at several moments, leaves nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_runner import labkit, labkit_child

from labkit import Lab, UsageError
from labkit.core import state
from labkit.runtime.docker import DockerRuntime, engine_available

PREFIX = os.environ.get("LABKIT_NAME_PREFIX", "")
TINY = "name: {name}\nnodes:\n  node-1: {{}}\npods:\n  p-1: {{node: node-1, run: [echo-server]}}\n"
ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def runtime():
    available, reason = engine_available()
    if not available:
        if os.environ.get("LABKIT_REQUIRE_DOCKER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return DockerRuntime()


def tiny(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(TINY.format(name=name))
    return path


def wait_for(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def pytest_run_that_hangs(tmp_path: Path, topology: Path) -> subprocess.Popen[bytes]:
    """A pytest run whose test holds the lab up until killed."""
    ready = tmp_path / "ready"
    test = tmp_path / "test_hangs.py"
    test.write_text(
        "import pathlib, time, pytest\n"
        f"@pytest.mark.topology({str(topology)!r})\n"
        "def test_hangs(lab):\n"
        f"    pathlib.Path({str(ready)!r}).touch()\n"
        "    time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for(ready.exists)
    return child


def kill9(child: subprocess.Popen[bytes]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(10)


def test_a_killed_pytest_run_is_reclaimed_by_the_next_up(runtime, tmp_path, capfd):
    topology = tiny(tmp_path, "reclaim-a")
    kill9(pytest_run_that_hangs(tmp_path, topology))
    name = PREFIX + "reclaim-a"
    assert runtime.labelled(name), "the killed run's lab is still there"
    lab = Lab.up(str(topology), runtime=runtime)
    try:
        lines = [line for line in capfd.readouterr().err.splitlines() if "reclaiming" in line]
        assert (
            len(lines) == 1
            and f"reclaiming lab {name}: its owner (pid" in lines[0]
            and "is gone" in lines[0]
        )
        assert lab.pod("p-1").exec("true").ok
    finally:
        lab.down()


def test_labkit_down_stale_removes_what_killed_runs_left(runtime, tmp_path):
    topology = tiny(tmp_path, "reclaim-b")
    kill9(pytest_run_that_hangs(tmp_path, topology))
    name = PREFIX + "reclaim-b"
    assert runtime.labelled(name)
    down = labkit("down", "--stale")
    assert down.returncode == 0, down.stderr
    assert f"removed lab {name}" in down.stdout
    assert runtime.labelled(name) == [] and name not in state.known_labs()


def test_a_labkit_up_killed_half_way_is_reclaimed(runtime, tmp_path, capfd):
    topology = tiny(tmp_path, "reclaim-c")
    name = PREFIX + "reclaim-c"
    child = subprocess.Popen(
        [sys.executable, "-m", "labkit", "up", str(topology)], stdout=subprocess.DEVNULL
    )
    wait_for(lambda: any("node-1" in item for item in runtime.labelled(name)))  # the node exists
    kill9(child)
    lab = Lab.up(str(topology), runtime=runtime)
    try:
        err = capfd.readouterr().err
        assert (
            f"reclaiming lab {name}: its owner (pid {child.pid}) died while bringing it up" in err
        )
    finally:
        lab.down()


def test_a_lab_kept_on_purpose_is_never_reclaimed(runtime, tmp_path):
    topology = tiny(tmp_path, "reclaim-d")
    name = PREFIX + "reclaim-d"
    try:
        assert labkit("up", str(topology)).returncode == 0  # by hand: kept; its process is gone now
        with pytest.raises(UsageError, match="is already up"):
            Lab.up(str(topology), runtime=runtime)
        assert f"removed lab {name}" not in labkit("down", "--stale").stdout
        assert runtime.lab_running(name)
    finally:
        labkit("down", name)


@pytest.mark.parametrize("moment", ["planning", "network", "node", "pods"])
def test_ctrl_c_during_up_leaves_nothing(runtime, tmp_path, moment):
    topology = tiny(tmp_path, f"sigint-{moment}")
    name = PREFIX + f"sigint-{moment}"
    lock = state.state_dir() / "locks" / f"{name}.lock"
    lock.unlink(missing_ok=True)  # made when `up` starts planning
    child = labkit_child("up", str(topology), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if moment == "planning":
        wait_for(lock.exists)  # planning and checking: nothing made yet
    elif moment == "network":
        wait_for(lambda: runtime.labelled(name) != [])
    elif moment == "node":
        wait_for(lambda: any("node-1" in item for item in runtime.labelled(name)))
    else:  # the node runs: its script (pods) is on the way
        wait_for(lambda: runtime.lab_running(name))
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    # 0 only where the tiny lab may finish before the signal lands
    assert child.returncode == 130 or (moment == "pods" and child.returncode == 0), stderr
    if child.returncode == 130:
        assert runtime.labelled(name) == [], stderr
        assert name not in state.known_labs()
    else:
        labkit("down", name)
