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

import contextlib
import os
import shutil
import signal
import subprocess
import time
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import docker
import docker.errors

from labkit.errors import LabkitError, UsageError
from labkit.runtime.host_routes import host_routes
from labkit.runtime.sandbox_plan import (  # noqa: F401  (the sandbox's public names)
    BRIDGE,
    DATA_ROOT,
    L2_LEGS,
    NS_PREFIX,
    START_TIMEOUT,
    Sandbox,
    SandboxError,
    SandboxHost,
    SandboxPlan,
    dockerd_argv,
    inventory_path,
    inventory_text,
    netns_prefix,
    pick_subnet,
    plan_from_state,
    plan_sandbox,
    read_state,
    write_state,
)
from labkit.runtime.sandbox_plan import run as _run
from labkit.runtime.sandbox_teardown import (  # noqa: F401
    HostStatus,
    daemon_pids,
    leftovers,
    sandbox_down,
    sandbox_status,
)
from labkit.runtime.swarm_setup import form_swarm, ship_image

# --- do (effects) ------------------------------------------------------------


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
        data = read_state(path.parent.name)
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
        # More legs on the same bridge: one macvlan network per leg (the engine allows
        # one per parent), so that several labs at once can have true L2.
        for leg in L2_LEGS:
            outer = f"{host.name}-{leg}"
            _ip(
                switch,
                "link",
                "add",
                outer,
                "type",
                "veth",
                "peer",
                "name",
                leg,
                "netns",
                host.netns,
            )
            _ip(switch, "link", "set", outer, "master", BRIDGE, "up")
            _ip(host.netns, "link", "set", leg, "up")


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
    if leftovers(name):
        say(f"removing a leftover sandbox {name!r}")
        sandbox_down(name)
    timings: dict[str, float] = {}
    start = time.monotonic()
    subnet = pick_subnet([*host_routes(), *_sandbox_subnets()])
    plan = plan_sandbox(name, n, subnet)
    write_state(plan, "starting")  # first: whatever happens next, `down` finds it
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
        write_state(plan, "up")
    except BaseException:
        sandbox_down(name)  # Ctrl-C or failure: leave nothing half-made
        raise
    return Sandbox(plan, inventory_path(name), timings)


def load_sandbox(name: str = "default") -> Sandbox:
    """The handle of a sandbox that is up (from its state file)."""
    data = read_state(name)
    if data is None or data.get("phase") != "up":
        raise UsageError(f"no sandbox {name!r} is up: run `labkit hosts sandbox up 2`")
    return Sandbox(plan_from_state(data), inventory_path(name))


def stop_host(name: str, host: str, grace: float = 10.0) -> None:
    """Stop one host's engine (its containers die with it): a host lost mid-lab."""
    item = load_sandbox(name).host(host)
    pids = daemon_pids(item.netns)
    for pid in pids:
        os.kill(pid, signal.SIGTERM)  # its containers stop with it
    deadline = time.monotonic() + grace
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(FileNotFoundError):
        Path(item.socket).unlink()  # so that clients fail at once instead of hanging


def start_host(name: str, host: str) -> docker.DockerClient:
    """Start a stopped host's engine again (its swarm membership is in its data-root)."""
    item = load_sandbox(name).host(host)
    return _wait_engine(item, _start_dockerd(item))
