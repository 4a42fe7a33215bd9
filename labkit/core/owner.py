"""Who owns a lab: the process that brought it up, recorded in the lab's labels.

A lab whose owner is gone (its process died: `kill -9`, a killed CI job, a
reboot) can be reclaimed by the next run; a lab kept on purpose (`labkit up`
by hand, `--lab-keep`) never is. Ownership can only be judged on the host
that recorded it: a lab owned on another host is never reclaimed from here.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

from labkit.core import state as state_store
from labkit.errors import UsageError
from labkit.runtime.base import Runtime

HOST = "labkit.owner.host"
BOOT = "labkit.owner.boot"
PID = "labkit.owner.pid"
START = "labkit.owner.start"
KEEP = "labkit.keep"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (tells a reused pid apart)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def owner_labels(*, keep: bool) -> dict[str, str]:
    pid = os.getpid()
    labels = {HOST: socket.gethostname(), BOOT: _boot_id(), PID: str(pid), START: _start_time(pid)}
    if keep:
        labels[KEEP] = "1"
    return labels


def stale_reason(labels: Mapping[str, str]) -> str | None:
    """Why the lab's owner is gone (then it may be reclaimed), or None."""
    if labels.get(KEEP) == "1" or PID not in labels:
        return None  # kept on purpose, or made before owners were recorded
    if labels.get(HOST) != socket.gethostname():
        return None  # another host's lab: its owner cannot be checked from here
    if labels.get(BOOT) != _boot_id():
        return f"its owner (pid {labels[PID]}) ran before this host rebooted"
    if _start_time(int(labels[PID])) != labels.get(START):
        return f"its owner (pid {labels[PID]}) is gone"
    return None


def reclaim_reason(
    labels: Mapping[str, str], *, running: bool, building: bool, stopped: bool = False
) -> str | None:
    """Why a new `up` may remove the lab already there under that name, or None.

    A kept lab is never reclaimed once it was complete: stopped (an engine
    restart) it waits for `labkit start`, and so does a lab stopped on purpose
    (`labkit stop`) whose owner lives. One whose owner died while it was still
    being built (`building`, from the state file) is junk.
    """
    stale = stale_reason(labels)
    if stale is not None:
        return stale
    if labels.get(KEEP) == "1" or stopped:
        mine = PID in labels and labels.get(HOST) == socket.gethostname()
        if building and mine and _start_time(int(labels[PID])) != labels.get(START):
            return f"its owner (pid {labels[PID]}) died while bringing it up"
        return None
    return None if running else "nothing of it runs"


def claim_name(runtime: Runtime, name: str) -> None:
    """Make room for a new lab called `name`: reclaim what a dead run left (one
    line on stderr saying so), refuse when a lab of that name is in use or kept."""
    if name not in runtime.lab_names():
        return
    running = runtime.lab_running(name)
    building, stopped = state_store.flag(name, "building"), state_store.flag(name, "stopped")
    reason = reclaim_reason(
        runtime.lab_labels(name), running=running, building=building, stopped=stopped
    )
    if reason is None:
        if stopped or not running:
            raise UsageError(
                f"a lab named {name!r} is stopped (labkit start {name}, or labkit down {name})"
            )
        raise UsageError(f"a lab named {name!r} is already up (labkit down {name})")
    print(f"labkit: reclaiming lab {name}: {reason}", file=sys.stderr)
    runtime.remove_lab(name)
    state_store.forget(name)
