"""Removing a lab's objects from one engine: its containers in parallel, then its networks."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import docker.errors

from labkit.concurrency import parallel
from labkit.errors import LabkitError


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
