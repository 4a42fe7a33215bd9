"""What every step over several hosts shares: doing one thing on each, and its errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import docker
import docker.errors

from labkit.concurrency import parallel
from labkit.errors import LabkitError
from labkit.runtime.docker import DockerRuntime

T = TypeVar("T")


class HostUnreachable(LabkitError):
    """One or more hosts did not answer; what could be done on the others was done."""


class HostLost(LabkitError):
    """The host of a node stopped answering mid-lab: its nodes are lost, the rest works."""


@dataclass(frozen=True)
class Cleanup:
    removed: int
    unreachable: dict[str, str] = field(default_factory=dict)  # host -> reason
    left: dict[str, str] = field(default_factory=dict)  # network -> why it is still there


def reason(error: BaseException) -> str:
    text = getattr(error, "explanation", None) or str(error) or type(error).__name__
    return str(text).splitlines()[0][:300]


def on_all(
    hosts: Mapping[str, DockerRuntime], work: Callable[[str, DockerRuntime], T]
) -> tuple[dict[str, T], dict[str, str]]:
    """Run `work` on every host in parallel: (results, unreachable host -> reason)."""

    def one(name: str) -> tuple[str, T | None, str]:
        try:
            return name, work(name, hosts[name]), ""
        except (docker.errors.DockerException, LabkitError, OSError) as error:
            return name, None, reason(error)

    results: dict[str, T] = {}
    failures: dict[str, str] = {}
    for name, value, why in parallel(one, list(hosts)):
        if why:
            failures[name] = why
        else:
            results[name] = value  # type: ignore[assignment]
    return results, failures


def unreachable_text(failures: Mapping[str, str]) -> str:
    listed = "; ".join(f"{name} ({why})" for name, why in failures.items())
    return f"host(s) not answering: {listed}"
