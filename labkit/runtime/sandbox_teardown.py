"""Tearing a sandbox down, and its status: found by name, never from memory.

Namespaces `lksb-<name>-*`, the folders and the cgroup parents are looked up
afresh, so `down` works from another process, after a crash, Ctrl-C or
kill -9, and is idempotent.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from labkit.concurrency import parallel
from labkit.runtime.sandbox_plan import (
    DATA_ROOT,
    RUN_ROOT,
    netns_prefix,
    plan_from_state,
    read_state,
)
from labkit.runtime.sandbox_plan import run as _run


def leftovers(name: str) -> bool:
    return bool(netns_of(name)) or (DATA_ROOT / name).exists() or (RUN_ROOT / name).exists()


def netns_of(name: str) -> list[str]:
    listed = _run("ip", "netns", "list", check=False).stdout.split("\n")
    names = [line.split()[0] for line in listed if line.strip()]
    return [item for item in names if item.startswith(netns_prefix(name))]


def _pids_in_netns(netns: str) -> list[int]:
    done = _run("ip", "netns", "pids", netns, check=False)
    return [int(pid) for pid in done.stdout.split() if pid.isdigit()]


def _cgroup_dirs(parent: str) -> list[Path]:
    """Every cgroup folder named `parent` under every cgroup mount (v1 and v2)."""
    dirs = []
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] in ("cgroup", "cgroup2"):
            candidate = Path(fields[1]) / parent
            if candidate.is_dir():
                dirs.append(candidate)
    return dirs


def _pids_in_cgroups(dirs: Iterable[Path]) -> set[int]:
    pids: set[int] = set()
    for folder in dirs:
        for procs in folder.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids |= {int(pid) for pid in procs.read_text().split()}
    return pids


def _kill(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _alive(pids: Iterable[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/stat").read_text()
            if status.rsplit(")", 1)[1].split()[0] != "Z":
                alive.append(pid)
        except OSError:
            pass
    return alive


def _stop_processes(name: str, grace: float = 8.0) -> None:
    """SIGTERM the daemons (they stop their containers), then SIGKILL whatever is left.

    Shims and container processes are found by namespace and cgroup parent,
    so a dockerd killed with -9 earlier leaves nothing running either.
    """
    namespaces = netns_of(name)
    cgroup_parents = [f"{netns}-containers" for netns in namespaces]
    daemons = [
        pid for netns in namespaces for pid in _pids_in_netns(netns) if _comm(pid) == "dockerd"
    ]
    _kill(daemons, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _alive(daemons) and time.monotonic() < deadline:
        time.sleep(0.1)
    for _ in range(50):
        left = {pid for netns in namespaces for pid in _pids_in_netns(netns)}
        left |= _pids_in_cgroups(d for parent in cgroup_parents for d in _cgroup_dirs(parent))
        left.discard(os.getpid())
        if not _alive(left):
            break
        _kill(_alive(left), signal.SIGKILL)
        time.sleep(0.1)
    for parent in cgroup_parents:
        for folder in _cgroup_dirs(parent):
            for path, _, _ in os.walk(folder, topdown=False):  # leaves first
                with contextlib.suppress(OSError):
                    os.rmdir(path)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _unmount_under(roots: Sequence[Path]) -> int:
    """Unmount (lazily, deepest first) whatever the host's mount table has under `roots`."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    under = [m for m in mounts if any(m == str(r) or m.startswith(f"{r}/") for r in roots)]
    for mount in sorted(under, key=len, reverse=True):
        _run("umount", "-l", mount, check=False)
    return len(under)


def sandbox_down(name: str) -> list[str]:
    """Remove sandbox `name` entirely; idempotent. Returns what it removed (for the user)."""
    removed: list[str] = []
    namespaces = netns_of(name)
    _stop_processes(name)
    for netns in namespaces:
        _run("ip", "netns", "delete", netns, check=False)
        removed.append(f"netns {netns}")
    roots = [DATA_ROOT / name, RUN_ROOT / name]
    if _unmount_under(roots):
        removed.append("mounts")
    # One `rm -rf` per host folder, in parallel: image layers are many files.
    folders = [folder for root in roots if root.exists() for folder in root.iterdir()]
    parallel(
        lambda folder: _run("rm", "-rf", "--one-file-system", str(folder), check=False), folders
    )
    for root in roots:
        if root.exists():
            shutil.rmtree(root, ignore_errors=True)
            removed.append(str(root))
        if root.parent.exists() and not any(root.parent.iterdir()):
            root.parent.rmdir()
    return removed


@dataclass(frozen=True)
class HostStatus:
    name: str
    url: str
    running: bool
    swarm: str
    role: str
    rss_mb: float


def _rss_mb(pids: Iterable[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def sandbox_status(name: str) -> list[HostStatus]:
    """Per host: running, swarm state and role, memory of its dockerd + containerd."""
    data = read_state(name)
    if data is None:
        return []
    plan = plan_from_state(data)
    result = []
    for host in plan.hosts:
        pids = _pids_in_netns(host.netns) if host.netns in netns_of(name) else []
        daemons = [pid for pid in pids if _comm(pid) in ("dockerd", "containerd")]
        swarm, role = "-", "-"
        try:
            info = docker.DockerClient(base_url=host.url, timeout=5).info()
            swarm = info.get("Swarm", {}).get("LocalNodeState", "-")
            role = "manager" if info.get("Swarm", {}).get("ControlAvailable") else "worker"
            running = True
        except (docker.errors.DockerException, OSError):
            running = False
        result.append(
            HostStatus(host.name, host.url, running, swarm, role, round(_rss_mb(daemons), 1))
        )
    return result


def daemon_pids(netns: str) -> list[int]:
    """The dockerd processes in one host's namespace."""
    return [pid for pid in _pids_in_netns(netns) if _comm(pid) == "dockerd"]
