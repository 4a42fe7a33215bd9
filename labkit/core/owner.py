"""Who owns a lab: the process that brought it up, recorded in the lab's labels.

A lab whose owner is gone (its process died: `kill -9`, a killed CI job, a
reboot) can be reclaimed by the next run; a lab kept on purpose (`labkit up`
by hand, `--lab-keep`) never is. Ownership can only be judged on the host
that recorded it: a lab owned on another host is never reclaimed from here.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path

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
