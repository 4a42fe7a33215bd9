"""A sandbox of N Docker hosts on this one machine, formed into a Swarm.

Each host is one `dockerd` in its own network namespace, with its own
data-root, exec-root, pidfile and unix socket. The hosts' `eth0`s are veths
into one more namespace (the "switch") that holds a Linux bridge and nothing
else: the bridge is not in the host's namespace, so nothing is routed to it,
no NAT applies and the host's firewall (Docker's FORWARD DROP, br_netfilter)
never sees its frames. The sandbox's /24 still avoids every host route, so
that no address inside it also means something on the machine.

Teardown finds everything by name (namespaces `lksb-<name>-*`, the folders,
the cgroup parents), not from memory, so `down` works from another process,
after a crash, Ctrl-C or kill -9, and is idempotent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import docker
import docker.errors
import yaml

from labkit.concurrency import parallel
from labkit.errors import LabkitError, UsageError
from labkit.runtime.docker import host_routes
from labkit.runtime.swarm import form_swarm, ship_image

DATA_ROOT = Path("/var/lib/labkit-sandbox")
RUN_ROOT = Path("/run/labkit-sandbox")
NETNS_DIR = Path("/run/netns")
NS_PREFIX = "lksb"
# Candidate /24s: private, outside Docker's default pools (172.17-31/16,
# 192.168/16), labkit's underlay pool (172.20/14) and Swarm's default 10.0/8 start.
SUBNET_POOL = IPv4Network("10.250.0.0/16")
BRIDGE = "br0"
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
    hosts = {host.name: {"url": host.url} for host in plan.hosts}
    header = (
        f"# labkit sandbox {plan.name!r}: made by `labkit hosts sandbox up`, removed by `down`\n"
    )
    return header + yaml.safe_dump({"hosts": hosts}, sort_keys=False)


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


# --- the sandbox handle ------------------------------------------------------


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


def _write_state(plan: SandboxPlan, phase: str) -> None:
    path = state_path(plan.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"plan": asdict(plan), "phase": phase, "pid": os.getpid(), "time": time.time()}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=2))
    temporary.replace(path)


def _read_state(name: str) -> dict[str, Any] | None:
    try:
        return json.loads(state_path(name).read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def _plan_from_state(data: dict[str, Any]) -> SandboxPlan:
    plan = data["plan"]
    hosts = tuple(SandboxHost(**host) for host in plan["hosts"])
    return SandboxPlan(plan["name"], plan["subnet"], plan["switch_netns"], hosts)


# --- do (effects) ------------------------------------------------------------


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise SandboxError(f"`{' '.join(argv)}` failed: {(done.stderr or done.stdout).strip()}")
    return done


def usable() -> tuple[bool, str]:
    """Whether this machine can run a sandbox (root, dockerd, ip netns, nsenter, unshare)."""
    if os.geteuid() != 0:
        return False, "a sandbox needs root (network namespaces, dockerd)"
    for tool in ("dockerd", "ip", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            return False, f"`{tool}` is not installed"
    probe = f"{NS_PREFIX}-probe-{os.getpid()}"
    made = _run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return False, f"`ip netns add` fails here: {made.stderr.strip()}"
    _run("ip", "netns", "delete", probe, check=False)
    return True, "root, dockerd and network namespaces are usable"


def _sandbox_subnets() -> list[IPv4Network]:
    """Subnets of the sandboxes that exist (their state files)."""
    subnets = []
    for path in DATA_ROOT.glob("*/state.json"):
        data = _read_state(path.parent.name)
        if data:
            subnets.append(IPv4Network(data["plan"]["subnet"]))
    return subnets


def _ip(netns: str, *args: str) -> None:
    _run("ip", "-n", netns, *args)


def _make_network(plan: SandboxPlan) -> None:
    switch = plan.switch_netns
    _run("ip", "netns", "add", switch)
    _ip(switch, "link", "add", BRIDGE, "type", "bridge")
    _ip(switch, "link", "set", BRIDGE, "up")
    for host in plan.hosts:
        _run("ip", "netns", "add", host.netns)
        peer = ("peer", "name", "eth0", "netns", host.netns)
        _ip(switch, "link", "add", host.name, "type", "veth", *peer)
        _ip(switch, "link", "set", host.name, "master", BRIDGE, "up")
        _ip(host.netns, "addr", "add", f"{host.address}/{plan.prefix_len}", "dev", "eth0")
        _ip(host.netns, "link", "set", "eth0", "up")
        _ip(host.netns, "link", "set", "lo", "up")


def _start_dockerd(host: SandboxHost) -> subprocess.Popen[bytes]:
    Path(host.data_root).mkdir(parents=True, exist_ok=True)
    Path(host.exec_root).mkdir(parents=True, exist_ok=True)
    config = Path(host.exec_root) / "daemon.json"
    config.write_text("{}\n")  # not the machine's /etc/docker/daemon.json
    log = open(Path(host.data_root) / "dockerd.log", "ab")  # noqa: SIM115 - the daemon keeps it
    # A session of its own: the daemons outlive `up` and a Ctrl-C aimed at it.
    return subprocess.Popen(
        dockerd_argv(host, str(config)), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip


def _wait_engine(host: SandboxHost, daemon: subprocess.Popen[bytes]) -> docker.DockerClient:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            log = (Path(host.data_root) / "dockerd.log").read_text(errors="replace")[-1500:]
            raise SandboxError(f"dockerd of {host.name} exited {daemon.returncode}:\n{log}")
        if Path(host.socket).exists():
            try:
                client = docker.DockerClient(base_url=host.url, timeout=120)
                client.ping()
                return client
            except docker.errors.DockerException:
                pass
        time.sleep(0.1)
    raise SandboxError(f"dockerd of {host.name} did not answer within {START_TIMEOUT:.0f} s")


def _local_node_image() -> tuple[docker.DockerClient, str] | None:
    """The machine's own engine and its node image tag, if it has one."""
    try:
        from labkit.runtime.images import node_image

        local = docker.from_env(timeout=300)
        return local, node_image(local)
    except (docker.errors.DockerException, LabkitError):
        return None


def sandbox_up(
    n: int,
    name: str = "default",
    *,
    image: bool = True,
    managers: int = 1,
    progress: Any = None,
) -> Sandbox:
    """Bring up `n` hosts in a swarm (replacing a leftover sandbox of that name)."""
    say = progress or (lambda line: None)
    ok, why = usable()
    if not ok:
        raise SandboxError(f"cannot run a sandbox here: {why}")
    if _leftovers(name):
        say(f"removing a leftover sandbox {name!r}")
        sandbox_down(name)
    timings: dict[str, float] = {}
    start = time.monotonic()
    subnet = pick_subnet([*host_routes(), *_sandbox_subnets()])
    plan = plan_sandbox(name, n, subnet)
    _write_state(plan, "starting")  # first: whatever happens next, `down` finds it
    try:
        _make_network(plan)
        timings["network"] = time.monotonic() - start
        daemons = [_start_dockerd(host) for host in plan.hosts]
        clients = [
            _wait_engine(host, daemon) for host, daemon in zip(plan.hosts, daemons, strict=True)
        ]
        timings["engines"] = time.monotonic() - start
        form_swarm(clients, [host.address for host in plan.hosts], managers=managers)
        timings["swarm"] = time.monotonic() - start
        if image:
            local = _local_node_image()
            if local is None:
                say("no node image on the local engine: none loaded into the sandbox")
            else:
                source, tag = local
                say(f"{tag} loaded into {ship_image(source, clients, tag)} host(s)")
        timings["image"] = time.monotonic() - start
        inventory_path(name).write_text(inventory_text(plan))
        _write_state(plan, "up")
    except BaseException:
        sandbox_down(name)  # Ctrl-C or failure: leave nothing half-made
        raise
    return Sandbox(plan, inventory_path(name), timings)


def _leftovers(name: str) -> bool:
    return bool(_netns_of(name)) or (DATA_ROOT / name).exists() or (RUN_ROOT / name).exists()


def _netns_of(name: str) -> list[str]:
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
    namespaces = _netns_of(name)
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
    namespaces = _netns_of(name)
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
    data = _read_state(name)
    if data is None:
        return []
    plan = _plan_from_state(data)
    result = []
    for host in plan.hosts:
        pids = _pids_in_netns(host.netns) if host.netns in _netns_of(name) else []
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


def load_sandbox(name: str = "default") -> Sandbox:
    """The handle of a sandbox that is up (from its state file)."""
    data = _read_state(name)
    if data is None or data.get("phase") != "up":
        raise UsageError(f"no sandbox {name!r} is up: run `python -m labkit.runtime.sandbox up 2`")
    return Sandbox(_plan_from_state(data), inventory_path(name))


# --- command line (until the lead's `labkit hosts sandbox`) -----------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.runtime.sandbox")
    parser.add_argument("--name", default="default")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="bring up N Docker hosts in a swarm")
    up.add_argument("count", type=int, nargs="?", default=2)
    up.add_argument("--no-image", action="store_true", help="do not load the node image")
    commands.add_parser("down", help="remove the sandbox (idempotent)")
    commands.add_parser("status", help="show the sandbox's hosts")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            sandbox = sandbox_up(args.count, args.name, image=not args.no_image, progress=print)
            steps = ", ".join(f"{k} {v:.2f}s" for k, v in sandbox.timings.items())
            print(f"sandbox {args.name!r} up ({steps}); hosts file: {sandbox.inventory}")
        elif args.command == "down":
            removed = sandbox_down(args.name)
            print(
                f"sandbox {args.name!r} removed"
                + (f": {', '.join(removed)}" if removed else " (nothing was there)")
            )
        else:
            rows = sandbox_status(args.name)
            if not rows:
                print(f"no sandbox {args.name!r}")
            for row in rows:
                state = "up" if row.running else "DOWN"
                print(
                    f"{row.name}  {state:4}  swarm={row.swarm:8} {row.role:7}  {row.rss_mb:6.1f} MB  {row.url}"
                )
    except LabkitError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"interrupted: sandbox {args.name!r} removed", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
