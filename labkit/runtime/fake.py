"""An in-memory Runtime for unit tests: records every call, fails on request.

    runtime = FakeRuntime()
    runtime.fail_exec("pod_add", on="lab-node-2")   # the next matching exec fails
    lab = Lab.up(topology, runtime=runtime)
    assert ("create_network", "lab", "underlay") in runtime.calls

Nothing runs: an exec answers `responses` (the first pattern found in the
command) or an empty success.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from labkit.errors import LabkitError
from labkit.runtime.base import (
    ExecError,
    ExecResult,
    NodeMode,
    container_name,
)
from labkit.runtime.network_spec import lab_network


@dataclass
class _Failure:
    pattern: str
    on: str | None
    error: BaseException | None
    times: int


@dataclass
class FakeRuntime:
    """Containers and networks as dicts; `calls` lists what was asked, in order."""

    image: str = "labkit-node:fake"
    underlay_mtu: int | None = None
    subnets_taken: list[IPv4Network] = field(default_factory=list)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    execs: list[tuple[str, str]] = field(default_factory=list)
    # pattern -> stdout, or a function of the command that returns it
    responses: dict[str, str | Callable[[str], str]] = field(default_factory=dict)
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    on_call: Callable[[tuple[Any, ...]], None] | None = None
    _failures: list[_Failure] = field(default_factory=list)

    # -- steering the fake ------------------------------------------------------
    def fail_exec(
        self,
        pattern: str,
        *,
        on: str | None = None,
        error: BaseException | None = None,
        times: int = 1,
    ) -> None:
        """Make the next `times` execs whose command contains `pattern` (on container
        `on`) fail: exit 1, or raise `error` (e.g. KeyboardInterrupt) instead."""
        self._failures.append(_Failure(pattern, on, error, times))

    def _record(self, *call: Any) -> None:
        self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)

    def reset(self) -> None:
        """Forget the calls so far (the engine's state stays)."""
        self.calls.clear()
        self.execs.clear()

    def call_names(self) -> list[str]:
        return [call[0] for call in self.calls]

    def execs_on(self, container: str) -> list[str]:
        """The commands run on `container` so far, in order."""
        return [command for where, command in self.execs if where == container]

    # -- engine -------------------------------------------------------------------
    def taken_subnets(self) -> list[IPv4Network]:
        return list(self.subnets_taken)

    def node_image(self) -> str:
        return self.image

    def has_image(self, ref: str) -> bool:
        return ref == self.image

    def node_mode(self, image: str) -> NodeMode:
        return NodeMode(True, "fake runtime")

    def engine_info(self) -> dict[str, Any]:
        return {"kernel": "fake", "cpus": 2, "engine": "fake"}

    def run_throwaway(self, image: str, script: str, *, timeout: float) -> str:
        self._record("run_throwaway", image)
        return ""

    # -- networks and nodes -------------------------------------------------------
    def create_network(
        self,
        lab: str,
        network: str,
        subnet: IPv4Network,
        extra_labels: Mapping[str, str] | None = None,
        mtu: int | None = None,
        driver: str = "bridge",
    ) -> str:
        self._record(
            "create_network", lab, network, str(subnet), *([driver] if driver != "bridge" else [])
        )
        spec = lab_network(lab, network, subnet, extra_labels, mtu)
        if spec.name in self.networks:
            raise LabkitError(f"network {spec.name} exists")
        self.networks[spec.name] = {
            "lab": lab, "subnet": spec.subnet, "labels": spec.labels, "mtu": spec.mtu, "spec": spec,
            "driver": driver,
        }  # fmt: skip
        return spec.name

    def create_node(
        self,
        lab: str,
        node: str,
        image: str,
        networks: Mapping[str, IPv4Address],
        extra_labels: Mapping[str, str] | None = None,
    ) -> str:
        self._record("create_node", lab, node, image, {k: str(v) for k, v in networks.items()})
        name = container_name(lab, node)
        self.containers[name] = {
            "lab": lab, "node": node, "running": True, "labels": dict(extra_labels or {}),
        }  # fmt: skip
        return name

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
        """As Docker's, the script seen as the node's first exec."""
        name = self.create_node(lab, node, image, networks, extra_labels)
        on_start()
        return self.exec(name, script)

    def _known(self, container: str) -> dict[str, Any]:
        if container not in self.containers:
            raise LabkitError(f"no container {container!r}: is the lab up?")
        return self.containers[container]

    def start_node(self, container: str) -> None:
        self._record("start_node", container)
        self._known(container)["running"] = True

    def stop_node(self, container: str, timeout: int = 2) -> None:
        self._record("stop_node", container)
        self._known(container)["running"] = False

    def is_running(self, container: str) -> bool:
        return bool(self._known(container)["running"])

    # -- exec and files -----------------------------------------------------------
    def exec(
        self,
        container: str,
        command: str | list[str],
        *,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        text = command if isinstance(command, str) else " ".join(command)
        self._record("exec", container, text)
        self.execs.append((container, text))
        if not self._known(container)["running"]:
            raise LabkitError(f"container {container!r} is not running")
        for failure in self._failures:
            if failure.times > 0 and failure.pattern in text and failure.on in (None, container):
                failure.times -= 1
                if failure.error is not None:
                    raise failure.error
                result = ExecResult(1, "", f"fake failure ({failure.pattern})")
                if check:
                    raise ExecError(container, text, result)
                return result
        answer = next((out for pattern, out in self.responses.items() if pattern in text), "")
        return ExecResult(0, answer(text) if callable(answer) else answer, "")

    def exec_stream(
        self, container: str, command: str | list[str]
    ) -> Generator[tuple[bytes, bytes], None, int]:
        """The exec's answer as one chunk of each stream, then its exit code."""
        result = self.exec(container, command, check=False)
        yield result.stdout.encode(), result.stderr.encode()
        return result.exit_code

    def put_file(self, container: str, path: str, content: str | bytes, mode: int = 0o644) -> None:
        self._record("put_file", container, path)
        self._known(container)
        self.files[(container, path)] = content.encode() if isinstance(content, str) else content

    # -- inventory and cleanup ----------------------------------------------------
    def lab_names(self) -> set[str]:
        return {c["lab"] for c in self.containers.values()} | {
            n["lab"] for n in self.networks.values()
        }

    def lab_running(self, lab: str) -> bool:
        return any(c["lab"] == lab and c["running"] for c in self.containers.values())

    def lab_labels(self, lab: str) -> dict[str, str]:
        for item in [*self.networks.values(), *self.containers.values()]:
            if item["lab"] == lab:
                return dict(item["labels"])
        return {}

    def labelled(self, lab: str) -> list[str]:
        return [name for name, c in self.containers.items() if c["lab"] == lab] + [
            name for name, n in self.networks.items() if n["lab"] == lab
        ]

    def remove_lab(self, lab: str) -> int:
        self._record("remove_lab", lab)
        names = self.labelled(lab)
        for name in names:
            self.containers.pop(name, None)
            self.networks.pop(name, None)
        return len(names)
