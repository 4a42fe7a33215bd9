"""The sandbox's plan and its files: names, addresses, folders, state (mostly pure).

See labkit.runtime.sandbox for what a sandbox is; this module is what both
bringing it up and tearing it down need to agree on.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import docker
import yaml

from labkit.errors import LabkitError, UsageError

DATA_ROOT = Path("/var/lib/labkit-sandbox")
RUN_ROOT = Path("/run/labkit-sandbox")
NETNS_DIR = Path("/run/netns")
NS_PREFIX = "lksb"
# Candidate /24s: private, outside Docker's default pools (172.17-31/16,
# 192.168/16), labkit's underlay pool (172.20/14) and Swarm's default 10.0/8 start.
SUBNET_POOL = IPv4Network("10.250.0.0/16")
BRIDGE = "br0"
L2_LEGS = ("l2a", "l2b", "l2c", "l2d")  # per host, more interfaces on the bridge (for macvlan)
START_TIMEOUT = 60.0  # seconds for one dockerd to answer
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,7}$"  # short: it goes into namespace names


class SandboxError(LabkitError):
    """The sandbox cannot be brought up or down; the message says why."""


# --- plan (pure) -----------------------------------------------------------


@dataclass(frozen=True)
class SandboxHost:
    name: str
    netns: str
    address: str  # on the sandbox bridge
    data_root: str
    exec_root: str

    @property
    def socket(self) -> str:
        return f"{self.exec_root}/docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> str:
        return f"{self.exec_root}/docker.pid"

    @property
    def cgroup_parent(self) -> str:
        return f"{self.netns}-containers"


@dataclass(frozen=True)
class SandboxPlan:
    name: str
    subnet: str
    switch_netns: str
    hosts: tuple[SandboxHost, ...]

    @property
    def prefix_len(self) -> int:
        return IPv4Network(self.subnet).prefixlen


def netns_prefix(name: str) -> str:
    return f"{NS_PREFIX}-{name}-"


def pick_subnet(taken: Iterable[IPv4Network], pool: IPv4Network = SUBNET_POOL) -> IPv4Network:
    """The first /24 of `pool` that overlaps none of `taken`."""
    taken = list(taken)
    for candidate in pool.subnets(new_prefix=24):
        if not any(candidate.overlaps(other) for other in taken):
            return candidate
    raise SandboxError(f"no free /24 left in {pool} for a sandbox")


def plan_sandbox(name: str, count: int, subnet: IPv4Network) -> SandboxPlan:
    if not re.match(NAME_PATTERN, name):
        raise UsageError(f"sandbox name {name!r}: 1-8 lower-case letters, digits or dashes")
    if not 1 <= count <= 8:
        raise UsageError(f"a sandbox has 1 to 8 hosts (asked for {count})")
    prefix = netns_prefix(name)
    hosts = tuple(
        SandboxHost(
            name=f"h{index}",
            netns=f"{prefix}h{index}",
            address=str(subnet.network_address + 10 + index),
            data_root=str(DATA_ROOT / name / f"h{index}"),
            exec_root=str(RUN_ROOT / name / f"h{index}"),
        )
        for index in range(1, count + 1)
    )
    return SandboxPlan(name, str(subnet), f"{prefix}sw", hosts)


def inventory_text(plan: SandboxPlan) -> str:
    """The hosts file (see labkit.topology.inventory) naming the sandbox's engines."""
    hosts = {host.name: {"url": host.url, "advertise": host.address} for host in plan.hosts}
    header = (
        f"# labkit sandbox {plan.name!r}: made by `labkit hosts sandbox up`, removed by `down`\n"
    )
    # The sandbox bridge is one segment with nothing else on it; its legs serve macvlan.
    document = {"hosts": hosts, "l2": {"parent": L2_LEGS[0], "parents": list(L2_LEGS[1:])}}
    return header + yaml.safe_dump(document, sort_keys=False)


def dockerd_argv(host: SandboxHost, config_file: str) -> list[str]:
    """dockerd in the host's network namespace, in private mount and UTS namespaces.

    `ip netns exec` would remount all of /sys and so lose the cgroup mounts
    dockerd needs; instead a fresh sysfs (which shows the namespace's links)
    is bound over just the two network folders.
    """
    sysfs = f"{host.exec_root}/sysfs"
    script = (
        "set -e; "
        f"hostname {host.name}; "  # the swarm's node name
        f"mkdir -p {sysfs}; mount -t sysfs sysfs {sysfs}; "
        f"mount --bind {sysfs}/class/net /sys/class/net; "
        f"mount --bind {sysfs}/devices/virtual/net /sys/devices/virtual/net; "
        'exec dockerd "$@"'
    )
    return [
        "nsenter", f"--net={NETNS_DIR / host.netns}", "--",
        "unshare", "--mount", "--uts", "--propagation", "slave", "--",
        "sh", "-c", script, "dockerd",
        "--config-file", config_file,
        "--data-root", host.data_root,
        "--exec-root", host.exec_root,
        "--pidfile", host.pidfile,
        "-H", host.url,
        "--bridge", "none",
        "--userland-proxy=false",
        "--cgroup-parent", host.cgroup_parent,
        "--log-level", "warn",
        "--shutdown-timeout", "3",
    ]  # fmt: skip


# --- the sandbox handle and its state file ------------------------------------------------------


@dataclass
class Sandbox:
    plan: SandboxPlan
    inventory: Path
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def hosts(self) -> tuple[SandboxHost, ...]:
        return self.plan.hosts

    def client(self, host: str | SandboxHost, timeout: int = 120) -> docker.DockerClient:
        item = host if isinstance(host, SandboxHost) else self.host(host)
        return docker.DockerClient(base_url=item.url, timeout=timeout)

    def host(self, name: str) -> SandboxHost:
        for item in self.plan.hosts:
            if item.name == name:
                return item
        raise UsageError(f"sandbox {self.name!r} has no host {name!r}")


def state_path(name: str) -> Path:
    return DATA_ROOT / name / "state.json"


def inventory_path(name: str) -> Path:
    return DATA_ROOT / name / "hosts.yaml"


def write_state(plan: SandboxPlan, phase: str) -> None:
    path = state_path(plan.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"plan": asdict(plan), "phase": phase, "pid": os.getpid(), "time": time.time()}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=2))
    temporary.replace(path)


def read_state(name: str) -> dict[str, Any] | None:
    try:
        return json.loads(state_path(name).read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def plan_from_state(data: dict[str, Any]) -> SandboxPlan:
    plan = data["plan"]
    hosts = tuple(SandboxHost(**host) for host in plan["hosts"])
    return SandboxPlan(plan["name"], plan["subnet"], plan["switch_netns"], hosts)


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise SandboxError(f"`{' '.join(argv)}` failed: {(done.stderr or done.stdout).strip()}")
    return done
