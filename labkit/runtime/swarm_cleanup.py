"""Removing one lab from every host of a swarm: containers on their hosts, networks after.

A host that does not answer is reported, never a reason to leave the others
dirty; running it again once the host is back cleans that host too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import docker
import docker.errors

from labkit.runtime.base import LAB_LABEL
from labkit.runtime.docker import DockerRuntime
from labkit.runtime.docker_removal import remove_containers
from labkit.runtime.fleet import Cleanup, HostUnreachable, on_all, reason


def clean_lab(hosts: Mapping[str, DockerRuntime], manager: Callable[[], str], lab: str) -> Cleanup:
    """Remove the lab from every reachable host; report the others (never raises for them).

    Containers first (on their hosts), then the overlays on a manager: a
    swarm network can only be removed there, once nothing is attached.
    """

    def containers(_: str, runtime: DockerRuntime) -> int:
        api = runtime.client.api
        ids = [c["Id"] for c in api.containers(all=True, filters={"label": f"{LAB_LABEL}={lab}"})]
        return remove_containers(api, ids)

    counts, unreachable = on_all(hosts, containers)
    removed = sum(counts.values())

    left: dict[str, str] = {}  # network -> why it could not be removed

    def networks(runtime: DockerRuntime, scopes: tuple[str, ...]) -> int:
        api = runtime.client.api
        gone = 0
        for item in api.networks(filters={"label": f"{LAB_LABEL}={lab}"}):
            if item.get("Scope", "local") not in scopes:
                continue
            try:
                remove_network(api, item["Id"])
                gone += 1
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as error:  # e.g. still attached on a lost host
                left[item["Name"]] = reason(error)
        return gone

    try:
        # Swarm networks on a manager only (a worker's copy goes with them).
        removed += networks(hosts[manager()], ("swarm",))
    except (HostUnreachable, docker.errors.DockerException, OSError) as error:
        unreachable.setdefault("manager", reason(error))
    # Local networks (e.g. a macvlan per host) live on each host.
    local, failures = on_all(hosts, lambda _, runtime: networks(runtime, ("local",)))
    removed += sum(local.values())
    for name, why in failures.items():
        unreachable.setdefault(name, why)
    if not left and not unreachable:
        await_networks_gone(hosts, lab)
    return Cleanup(removed, unreachable, left)


def remove_network(api: Any, network: str, patience: float = 10.0) -> None:
    """Remove a network; a swarm frees a removed container's attachment (its task)
    a moment later, so "in use by task" is waited out, briefly."""
    deadline = time.monotonic() + patience
    while True:
        try:
            api.remove_network(network)
            return
        except docker.errors.APIError as error:
            if "in use by task" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def await_networks_gone(
    hosts: Mapping[str, DockerRuntime], lab: str, timeout: float = 15.0
) -> None:
    """A removed swarm network lingers a moment in each engine's list; wait it out."""
    selector = {"label": f"{LAB_LABEL}={lab}"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left, _ = on_all(hosts, lambda _, runtime: runtime.client.api.networks(filters=selector))
        if not any(left.values()):
            return
        time.sleep(0.2)
