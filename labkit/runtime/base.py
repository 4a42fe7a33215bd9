"""The Runtime protocol: everything labkit asks of a container engine.

Every floor above `runtime/` talks to an engine only through this protocol;
the Docker runtime (one host, or several through Swarm) and the fake used by
the unit tests implement it. Results and errors that cross it live here too.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Protocol, runtime_checkable

from labkit.errors import LabkitError

LAB_LABEL = "labkit.lab"
NODE_LABEL = "labkit.node"
NETWORK_LABEL = "labkit.network"


def container_name(lab: str, node: str) -> str:
    """The one rule for a node container's name."""
    return f"{lab}-{node}"


def network_name(lab: str, network: str) -> str:
    """The one rule for an underlay network's engine name."""
    return f"{lab}-{network}"


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class ExecError(LabkitError):
    def __init__(self, where: str, command: str, result: ExecResult) -> None:
        self.result = result
        tail = (result.stderr or result.stdout).strip()[-2000:]
        super().__init__(f"on {where}: `{command[:300]}` exited {result.exit_code}:\n{tail}")


@dataclass(frozen=True)
class NodeMode:
    """How node containers get their powers on this engine."""

    privileged: bool
    reason: str


@runtime_checkable
class Runtime(Protocol):
    """Networks, node containers, exec and files, labels and images on an engine."""

    underlay_mtu: int | None  # what its networks give containers at most (None: as asked)

    # -- engine ---------------------------------------------------------------
    def taken_subnets(self) -> list[IPv4Network]:
        """Subnets already in use (engine networks, host routes): not to reuse."""
        ...

    def node_image(self) -> str:
        """The tag of labkit's node image on the engine (built when missing)."""
        ...

    def has_image(self, ref: str) -> bool: ...

    def node_mode(self, image: str) -> NodeMode: ...

    def engine_info(self) -> dict[str, Any]:
        """Kernel version, CPU count, engine version (for reports)."""
        ...

    def run_throwaway(self, image: str, script: str, *, timeout: float) -> str:
        """Run `script` in a short-lived, labelled, networkless node container; its stdout."""
        ...

    # -- networks and nodes ---------------------------------------------------
    def create_network(
        self,
        lab: str,
        network: str,
        subnet: IPv4Network,
        extra_labels: Mapping[str, str] | None = None,
        mtu: int | None = None,
        driver: str = "bridge",  # or "macvlan" (topology's `networks.<name>.driver`)
    ) -> str: ...

    def create_node(
        self,
        lab: str,
        node: str,
        image: str,
        networks: Mapping[str, IPv4Address],
        extra_labels: Mapping[str, str] | None = None,
    ) -> str: ...

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
        """create_node, then `script` run in it (an ExecError if it fails); its result.
        An engine may run it as the container's first command, not as an exec.
        `on_start` is called once the container started."""
        ...

    def start_node(self, container: str) -> None: ...

    def stop_node(self, container: str, timeout: int = 2) -> None: ...

    def is_running(self, container: str) -> bool: ...

    # -- exec and files -------------------------------------------------------
    def exec(
        self,
        container: str,
        command: str | list[str],
        *,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult: ...

    def exec_stream(
        self, container: str, command: str | list[str]
    ) -> Generator[tuple[bytes, bytes], None, int]:
        """Run a command; yield its (stdout, stderr) bytes as they come, until it exits;
        then return its exit code (-1: unknown)."""
        ...

    def put_file(
        self, container: str, path: str, content: str | bytes, mode: int = 0o644
    ) -> None: ...

    # -- inventory and cleanup ------------------------------------------------
    def lab_names(self) -> set[str]: ...

    def lab_running(self, lab: str) -> bool: ...

    def lab_labels(self, lab: str) -> dict[str, str]:
        """The labels of the lab's first network (its owner's, among them)."""
        ...

    def labelled(self, lab: str) -> list[str]:
        """Names of every container and network that carries the lab's label."""
        ...

    def remove_lab(self, lab: str) -> int: ...
