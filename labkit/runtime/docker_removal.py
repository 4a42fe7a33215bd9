"""Removing a lab's objects from one engine: its containers in parallel, and its networks."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import docker.errors

from labkit.concurrency import parallel
from labkit.errors import LabkitError
from labkit.runtime.base import LAB_LABEL


def remove_containers(api: Any, ids: list[str]) -> int:
    """Force-remove each container (in parallel); the count removed by this call."""

    def remove(container_id: str) -> int:
        try:
            api.remove_container(container_id, force=True, v=True)
            return 1
        except docker.errors.NotFound:
            return 0
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # another process is removing it: gone soon
                return 0
            raise

    return sum(parallel(remove, ids))


def remove_lab_objects(api: Any, lab: str, detach_first: bool) -> tuple[int, list[Any]]:
    """Remove the lab's containers and networks: the count removed, and the networks as
    listed. `detach_first` disconnects each container from the lab's networks it is on,
    so that removing them (the engine's bridge and iptables work, ~90 ms a network)
    runs beside the containers' kills instead of after them (`labkit down` of the
    default lab: 0.54 s before, 0.42-0.44 s with it). Without it, the plain order:
    `docker rm -f`, then `docker network rm`."""
    selector = {"label": f"{LAB_LABEL}={lab}"}
    containers = api.containers(all=True, filters=selector)
    ids = [item["Id"] for item in containers]
    networks = api.networks(filters=selector)
    if not detach_first:
        removed = remove_containers(api, ids)
        return removed + sum(remove_network(api, n["Id"], n["Name"]) for n in networks), networks

    ours = {n["Id"] for n in networks}
    attached = [
        (item["Id"], endpoint["NetworkID"])
        for item in containers
        for endpoint in ((item.get("NetworkSettings") or {}).get("Networks") or {}).values()
        if endpoint.get("NetworkID") in ours
    ]

    def detach(pair: tuple[str, str]) -> None:
        with contextlib.suppress(docker.errors.APIError):  # gone meanwhile
            api.disconnect_container_from_network(*pair, force=True)

    parallel(detach, attached)
    jobs: list[Callable[[], int]] = [partial(remove_containers, api, ids)]
    jobs += [partial(remove_network, api, n["Id"], n["Name"]) for n in networks]
    return sum(parallel(lambda job: job(), jobs)), networks


def remove_network(api: Any, network_id: str, name: str, within: float = 15.0) -> int:
    """Remove a network whose containers were just removed. The engine releases
    their endpoints a moment after it answers (seen with 100 containers), so
    "has active endpoints" is asked again, any container still attached removed."""
    deadline = time.monotonic() + within
    while True:
        try:
            api.remove_network(network_id)
            return 1
        except docker.errors.NotFound:
            return 0
        except docker.errors.APIError as exc:
            if "active endpoints" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise LabkitError(
                    f"the engine still counts an endpoint on network {name} though no container "
                    f"is attached (a Docker engine bug); restart the engine, then run "
                    f"`labkit down` again"
                ) from None
        attached = (api.inspect_network(network_id).get("Containers") or {}).keys()
        for container_id in attached:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                api.remove_container(container_id, force=True, v=True)
        time.sleep(0.2)
