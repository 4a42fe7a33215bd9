"""The Docker runtime: the only code that talks to the engine (docker SDK).

Networks are always created `internal`; every object carries the label
`labkit.lab=<lab>` so that whatever a crash leaves behind can be found.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import tarfile
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import asdict, replace
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions

from labkit.errors import EngineUnavailable, LabkitError
from labkit.runtime import boot, macvlan_parent
from labkit.runtime.base import (
    LAB_LABEL,
    NODE_LABEL,
    ExecError,
    ExecResult,
    NodeMode,
    container_name,
    network_name,
)
from labkit.runtime.docker_exec import STDERR, attached, exec_frames, exec_output
from labkit.runtime.docker_removal import remove_lab_objects
from labkit.runtime.host_routes import host_routes
from labkit.runtime.network_spec import NetworkSpec, lab_network

# What a node needs when --privileged is refused (a host whose capability
# bounding set lacks one of "all caps", e.g. CAP_SYS_RESOURCE): the docker
# default set plus what routing, namespaces, tracing and daemons need.
NODE_CAPABILITIES = [
    "NET_ADMIN", "NET_RAW", "NET_BROADCAST", "NET_BIND_SERVICE", "SYS_ADMIN", "SYS_PTRACE",
    "SYS_NICE", "IPC_LOCK", "KILL", "SETUID", "SETGID", "SETPCAP", "CHOWN", "DAC_OVERRIDE",
    "FOWNER", "FSETID", "MKNOD", "AUDIT_WRITE", "SYS_CHROOT", "SETFCAP",
]  # fmt: skip
UNCONFINED = ["seccomp=unconfined", "apparmor=unconfined"]
DEFAULT_MTU = 1500  # a macvlan network's without an `mtu`: Docker's bridge default

# Per-node sysctls set at creation (the container's own network namespace).
NODE_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
}


class DockerRuntime:
    """Networks, node containers, exec and files, on one Docker engine."""

    underlay_mtu: int | None = None  # a bridge network takes the topology's MTU

    def __init__(self, client: docker.DockerClient | None = None) -> None:
        self._client = client
        self._mode: NodeMode | None = None
        self._commands: dict[str, list[str]] = {}  # image -> its own entrypoint and command
        self._lock = threading.Lock()

    # -- engine -------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = connect()
        return self._client

    def taken_subnets(self) -> list[IPv4Network]:
        """Subnets of every Docker network and every host route: not to reuse."""
        return self.engine_subnets() + host_routes()

    def engine_subnets(self) -> list[IPv4Network]:
        """Subnets of the engine's own networks."""
        taken: list[IPv4Network] = []
        for network in self.client.networks.list():
            for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
                subnet = config.get("Subnet", "")
                if subnet and ":" not in subnet:
                    taken.append(IPv4Network(subnet, strict=False))
        return taken

    def node_image(self) -> str:
        from labkit.runtime.images import node_image

        return node_image(self.client)

    def has_image(self, ref: str) -> bool:
        try:
            self.client.images.get(ref)
            return True
        except docker.errors.ImageNotFound:
            return False

    def engine_info(self) -> dict[str, Any]:
        info = self.client.info()
        return {
            "kernel": info.get("KernelVersion"),
            "cpus": info.get("NCPU"),
            "engine": f"Docker {info.get('ServerVersion')}",
        }

    def run_throwaway(self, image: str, script: str, *, timeout: float) -> str:
        mode = self.node_mode(image)
        container = self.client.containers.run(
            image, ["sleep", str(int(timeout) + 5)], detach=True, remove=True, network_mode="none",
            privileged=mode.privileged,
            cap_add=None if mode.privileged else ["NET_ADMIN", "SYS_ADMIN", "NET_RAW"],
            security_opt=None if mode.privileged else UNCONFINED,
            devices=None if mode.privileged else ["/dev/net/tun:/dev/net/tun:rwm"],
            labels={LAB_LABEL: "probe"},
        )  # fmt: skip
        try:
            return self.exec(str(container.name), script, check=False, timeout=timeout).stdout
        finally:
            container.remove(force=True)

    def node_mode(self, image: str) -> NodeMode:
        """Privileged where the engine allows it, else explicit caps + unconfined.

        Probed once per engine and boot (a throwaway container costs every CLI
        call a few hundred ms otherwise), remembered in the cache folder.
        """
        with self._lock:
            if self._mode is None:
                cached = _mode_cache(self.client)
                if cached.exists():
                    self._mode = NodeMode(**json.loads(cached.read_text()))
                else:
                    self._mode = self._probe_mode(image)
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    cached.write_text(json.dumps(asdict(self._mode)))
            return self._mode

    def remove_dead_probes(self, older_than: float = 120.0) -> int:
        """Probe containers a killed process left (never started, or exited): removed.
        Young ones may belong to a probe running now in another process."""
        found = self.client.api.containers(all=True, filters={"label": f"{LAB_LABEL}=probe"})
        dead = [
            item["Id"] for item in found
            if item.get("State") != "running" and time.time() - item.get("Created", 0) > older_than
        ]  # fmt: skip
        for container_id in dead:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_container(container_id, force=True)
        return len(dead)

    def _probe_mode(self, image: str) -> NodeMode:
        self.remove_dead_probes()
        # Created, then started: a refused start leaves the container, which
        # is removed here (only this one: other processes may be probing too).
        probe = self.client.containers.create(
            image, ["true"], privileged=True, network_mode="none", labels={LAB_LABEL: "probe"}
        )
        try:
            probe.start()
            return NodeMode(True, "the engine allows --privileged")
        except docker.errors.APIError as exc:
            reason = str(exc.explanation or exc).strip()
            return NodeMode(
                False,
                f"--privileged is refused here ({reason[:160]}); using explicit capabilities "
                "with seccomp/apparmor unconfined",
            )
        finally:
            probe.remove(force=True)

    # -- networks and nodes ---------------------------------------------------

    def create_network(
        self,
        lab: str,
        network: str,
        subnet: IPv4Network,
        extra_labels: Mapping[str, str] | None = None,
        mtu: int | None = None,
        driver: str = "bridge",
    ) -> str:
        spec = lab_network(lab, network, subnet, extra_labels, mtu)
        if driver == "macvlan":
            self._create_macvlan(spec, lab)
        else:
            self.client.networks.create(spec.name, driver="bridge", **spec.create_args())
        return spec.name

    def _create_macvlan(self, spec: NetworkSpec, lab: str) -> None:
        """A macvlan network on a veth pair of its own (macvlan_parent.py); the pair's
        MTU is the network's, which the nodes' interfaces take."""
        parent = macvlan_parent.parent_name(spec.name)
        script = macvlan_parent.create_script(parent, lab, spec.mtu or DEFAULT_MTU)
        self._on_engine_host(script)
        macvlan = replace(spec, mtu=None, options={"parent": parent, "macvlan_mode": "bridge"})
        try:
            self.client.networks.create(spec.name, driver="macvlan", **macvlan.create_args())
        except BaseException:
            self._on_engine_host(macvlan_parent.delete_script([parent]))
            raise

    def _on_engine_host(self, script: str) -> None:
        macvlan_parent.run_script(self.client, self.node_image(), script)

    def remove_macvlan_parents(self, lab: str | None = None) -> None:
        """The parent pairs of `lab`'s macvlan networks (None: of every lab) left on the
        engine's host by a run killed before it made the network."""
        self._on_engine_host(macvlan_parent.sweep_script(lab))

    def create_node(
        self,
        lab: str,
        node: str,
        image: str,
        networks: Mapping[str, IPv4Address],
        extra_labels: Mapping[str, str] | None = None,
    ) -> str:
        """Create and start a node container attached to `networks` (name -> address)."""
        self.client.api.start(self._create_node(lab, node, image, networks, extra_labels))
        return container_name(lab, node)

    def create_node_running(
        self,
        lab: str,
        node: str,
        image: str,
        networks: Mapping[str, IPv4Address],
        extra_labels: Mapping[str, str] | None = None,
        *,
        script: str,
        on_start: Callable[[], None] = lambda: None,
    ) -> ExecResult:
        """create_node, `script` run by the container's own command at its first boot
        (`boot`: no exec); the script's result, an ExecError if it failed."""
        api = self.client.api
        created = self._create_node(lab, node, image, networks, extra_labels, script)
        with attached(api, created) as frames:
            api.start(created)
            on_start()
            result = boot.result(frames)
        if not result.ok:
            raise ExecError(container_name(lab, node), "its first boot's script", result)
        return result

    def _create_node(
        self,
        lab: str,
        node: str,
        image: str,
        networks: Mapping[str, IPv4Address],
        extra_labels: Mapping[str, str] | None,
        script: str | None = None,
    ) -> str:
        """The node's container, created, not started; its id."""
        mode = self.node_mode(image)
        api = self.client.api
        host_config = api.create_host_config(
            privileged=mode.privileged,
            cap_add=None if mode.privileged else NODE_CAPABILITIES,
            security_opt=None if mode.privileged else UNCONFINED,
            devices=None if mode.privileged else ["/dev/net/tun:/dev/net/tun:rwm"],
            sysctls=NODE_SYSCTLS,
            init=True,  # reaps the pods' processes
            network_mode=network_name(lab, next(iter(networks))) if networks else "none",
        )
        if not mode.privileged:
            # What the CLI's `--security-opt systempaths=unconfined` means: a
            # writable /proc/sys (per-netns sysctls of pods) and nothing masked.
            host_config["MaskedPaths"] = []
            host_config["ReadonlyPaths"] = []
        items = list(networks.items())
        networking = None
        if items:
            first_net, first_ip = items[0]
            endpoint = api.create_endpoint_config(ipv4_address=str(first_ip))
            networking = api.create_networking_config({network_name(lab, first_net): endpoint})  # type: ignore[arg-type]
        labels = {LAB_LABEL: lab, NODE_LABEL: node, **(extra_labels or {})}
        entrypoint, command = None, None
        if script is not None:
            entrypoint, command = boot.entrypoint(script), self._own_command(image)
        created = api.create_container(
            image, name=container_name(lab, node), hostname=node, labels=labels,
            host_config=host_config, networking_config=networking, detach=True,
            entrypoint=entrypoint, command=command,
        )  # fmt: skip
        for network, address in items[1:]:
            api.connect_container_to_network(
                created["Id"], network_name(lab, network), ipv4_address=str(address)
            )
        return str(created["Id"])

    def _own_command(self, image: str) -> list[str]:
        """What the image runs (entrypoint and command), asked once per image."""
        with self._lock:
            if image not in self._commands:
                config = self.client.api.inspect_image(image)["Config"] or {}
                self._commands[image] = boot.command(config.get("Entrypoint"), config.get("Cmd"))
            return self._commands[image]

    # By name, never through cached objects: a lab removed and made again under
    # the same name (by this process or another) has new container ids.
    def start_node(self, container: str) -> None:
        self._by_name(container, lambda api: api.start(container))

    def stop_node(self, container: str, timeout: int = 2) -> None:
        self._by_name(container, lambda api: api.stop(container, timeout=timeout))

    def is_running(self, container: str) -> bool:
        state = self._by_name(container, lambda api: api.inspect_container(container)["State"])
        return bool(state.get("Running"))

    def _by_name(self, container: str, call: Callable[[Any], Any]) -> Any:
        try:
            return call(self.client.api)
        except docker.errors.NotFound:
            raise LabkitError(f"no container {container!r}: is the lab up?") from None

    # -- exec and files -------------------------------------------------------

    def exec(
        self,
        container: str,
        command: str | list[str],
        *,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        """Run a command in a node container and wait for it.

        A string runs through `sh -c`; `timeout` bounds it inside the container.
        """
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        if timeout is not None:
            argv = ["timeout", "-k", "1", str(timeout), *argv]
        api = self.client.api
        try:
            exec_id = api.exec_create(container, argv, environment=dict(env or {}))["Id"]
            stdout, stderr = exec_output(api, exec_id)
            exit_code = api.exec_inspect(exec_id)["ExitCode"]
        except docker.errors.NotFound:
            raise LabkitError(f"no container {container!r}: is the lab up?") from None
        except docker.errors.APIError as exc:
            raise LabkitError(f"cannot exec in {container!r}: {exc.explanation or exc}") from None
        result = ExecResult(
            exit_code if exit_code is not None else -1,
            (stdout or b"").decode(errors="replace"),
            (stderr or b"").decode(errors="replace"),
        )
        if check and not result.ok:
            shown = command if isinstance(command, str) else shlex.join(command)
            raise ExecError(container, shown, result)
        return result

    def exec_stream(
        self, container: str, command: str | list[str]
    ) -> Generator[tuple[bytes, bytes], None, int]:
        """Run a command; yield its (stdout, stderr) bytes as the engine sends them
        (the SDK's attached exec stream: no docker CLI, works on a remote engine);
        return its exit code."""
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        api = self.client.api
        try:
            exec_id = api.exec_create(container, argv)["Id"]
        except docker.errors.NotFound:
            raise LabkitError(f"no container {container!r}: is the lab up?") from None
        # closed when the caller stops reading
        with contextlib.closing(exec_frames(api, exec_id)) as frames:
            for stream, data in frames:
                yield (b"", data) if stream == STDERR else (data, b"")
        code = api.exec_inspect(exec_id)["ExitCode"]
        return code if code is not None else -1

    def put_file(self, container: str, path: str, content: str | bytes, mode: int = 0o644) -> None:
        """Write one file into a node container (parent folders created)."""
        data = content.encode() if isinstance(content, str) else content
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            info = tarfile.TarInfo(name=Path(path).name)
            info.size, info.mode = len(data), mode
            archive.addfile(info, io.BytesIO(data))
        parent = str(Path(path).parent)
        self.exec(container, ["mkdir", "-p", parent])
        self.client.api.put_archive(container, parent, buffer.getvalue())

    # -- inventory and cleanup ------------------------------------------------

    def lab_names(self) -> set[str]:
        """Every lab that has a labelled container or network on this engine.

        Plain list calls (no per-object inspect), so a container that another
        process removes meanwhile cannot make this fail.
        """
        api = self.client.api
        labelled = api.containers(all=True, filters={"label": LAB_LABEL})
        labelled += api.networks(filters={"label": LAB_LABEL})
        names = {(item.get("Labels") or {}).get(LAB_LABEL, "") for item in labelled}
        return {name for name in names if name}

    def lab_running(self, lab: str) -> bool:
        """Whether any container of the lab is running."""
        running = self.client.api.containers(
            filters={"label": f"{LAB_LABEL}={lab}", "status": "running"}
        )
        return bool(running)

    def lab_labels(self, lab: str) -> dict[str, str]:
        found = self.client.api.networks(filters={"label": f"{LAB_LABEL}={lab}"})
        found = found or self.client.api.containers(
            all=True, filters={"label": f"{LAB_LABEL}={lab}"}
        )
        return dict(found[0].get("Labels") or {}) if found else {}

    def labelled(self, lab: str) -> list[str]:
        selector = {"label": f"{LAB_LABEL}={lab}"}
        api = self.client.api
        names = [
            item["Names"][0].lstrip("/") for item in api.containers(all=True, filters=selector)
        ]
        return names + [item["Name"] for item in api.networks(filters=selector)]

    def memory_bytes(self, container: str) -> int:
        """A container's memory as its cgroup counts it, less the page cache it could drop."""
        stats = self.client.api.stats(container, stream=False, one_shot=True)["memory_stats"]
        inactive = (stats.get("stats") or {}).get("inactive_file", 0)
        return int(stats.get("usage", 0)) - int(inactive)

    def remove_lab(self, lab: str) -> int:
        """Remove every container (in parallel) and network labelled `lab`, the networks
        beside the containers (docker_removal). Idempotent."""
        removed, networks = remove_lab_objects(self.client.api, lab, detach_first=True)
        parents = [(n.get("Options") or {}).get("parent", "") for n in networks]
        if ours := [p for p in parents if macvlan_parent.is_parent(p)]:
            self._on_engine_host(macvlan_parent.delete_script(ours))
        return removed


@lru_cache(maxsize=16)
def engine_identity(client: docker.DockerClient) -> tuple[str, str]:
    """The engine's ID and its host's kernel version: fixed while a process runs, and
    one `info` is 7 ms that `up` paid twice before its first container."""
    info = client.info()
    return str(info.get("ID", "unknown")), str(info.get("KernelVersion", "unknown"))


def _mode_cache(client: docker.DockerClient) -> Path:
    engine = engine_identity(client)[0].replace(":", "")
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "unknown"
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "labkit"
    return root / f"node-mode-{engine[:24]}-{boot[:8]}.json"


ENGINE_ENV = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
_connected: dict[tuple[str, ...], docker.DockerClient] = {}
_connecting = threading.Lock()


def connect() -> docker.DockerClient:
    """The engine the environment names, one client per process: connecting is a
    version query and a ping (10 ms), and every DockerRuntime() asked again.
    A failure is not remembered: the next call tries again."""
    key = tuple(os.environ.get(name, "") for name in ENGINE_ENV)
    with _connecting:
        if (known := _connected.get(key)) is not None:
            return known
        try:
            client = docker.from_env(timeout=120)
            client.ping()
        except docker.errors.DockerException as exc:
            raise EngineUnavailable(
                f"no Docker engine answers ({exc}); run `make setup` (or scripts/setup-host.sh)"
            ) from None
        _connected[key] = client
        return client


def engine_available() -> tuple[bool, str]:
    try:
        connect().ping()  # the client may be an earlier one: ask the engine now
        return True, "a Docker engine answers"
    except EngineUnavailable as exc:
        return False, str(exc)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        return False, f"no Docker engine answers ({exc})"
