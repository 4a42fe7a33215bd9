"""What a running lab remembers between processes (CLI calls, --lab-reuse).

One JSON file per lab under $LABKIT_STATE_DIR (default ~/.local/state/labkit),
and beside it a lock file that makes bringing up and removing a lab of one
name take turns between processes: a `down` (or a reclaim) that ran while an
`up` of the same name was creating used to remove the network under it
(`network <lab>-underlay not found`).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # loaded when a state is read: `labkit down` needs neither
    from labkit.topology.addressing import Addresses
    from labkit.topology.model import Topology


def state_dir() -> Path:
    default = Path.home() / ".local" / "state" / "labkit"
    return Path(os.environ.get("LABKIT_STATE_DIR", default))


def state_path(lab: str) -> Path:
    return state_dir() / f"{lab}.json"


def save(lab: str, topology: Topology, addresses: Addresses, extra: dict[str, Any]) -> None:
    path = state_path(lab)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "topology": topology.model_dump(mode="json", exclude_none=True),
        "addresses": {
            "underlay_subnets": {k: str(v) for k, v in addresses.underlay_subnets.items()},
            "node_ips": {
                node: {net: str(ip) for net, ip in by_net.items()}
                for node, by_net in addresses.node_ips.items()
            },
            "pod_subnets": {k: str(v) for k, v in addresses.pod_subnets.items()},
            "pod_ips": {k: str(v) for k, v in addresses.pod_ips.items()},
        },
        **extra,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=2))
    tmp.replace(path)


def load(lab: str) -> tuple[Topology, Addresses, dict[str, Any]] | None:
    from labkit.topology.addressing import Addresses
    from labkit.topology.model import Topology

    path = state_path(lab)
    if not path.exists():
        return None
    document = json.loads(path.read_text())
    topology = Topology.model_validate(document.pop("topology"))
    raw = document.pop("addresses")
    addresses = Addresses(
        underlay_subnets={k: IPv4Network(v) for k, v in raw["underlay_subnets"].items()},
        node_ips={
            node: {net: IPv4Address(ip) for net, ip in by_net.items()}
            for node, by_net in raw["node_ips"].items()
        },
        pod_subnets={k: IPv4Network(v) for k, v in raw["pod_subnets"].items()},
        pod_ips={k: IPv4Address(v) for k, v in raw["pod_ips"].items()},
    )
    return topology, addresses, document


def extras(lab: str) -> dict[str, Any] | None:
    """A saved lab's own keys (its hosts, its layers), without parsing its topology:
    `labkit down` needs no model. None when the lab is not known."""
    try:
        document: dict[str, Any] = json.loads(state_path(lab).read_text())
    except (OSError, ValueError):
        return None
    document.pop("topology", None)
    document.pop("addresses", None)
    return document


def forget(lab: str) -> None:
    state_path(lab).unlink(missing_ok=True)


def known_labs() -> list[str]:
    folder = state_dir()
    return sorted(p.stem for p in folder.glob("*.json")) if folder.exists() else []


def flag(lab: str, key: str) -> bool:
    """One flag of a lab's saved state (`building`, `stopped`), without parsing the rest."""
    return bool(((extras(lab) or {}).get("layers") or {}).get(key))


_held: dict[tuple[str, int], int] = {}  # (lab, thread) -> depth: re-entrant in one thread
_held_guard = threading.Lock()


@contextmanager
def lock(lab: str) -> Iterator[None]:
    """Hold the lab name's lock while creating or removing its objects."""
    key = (lab, threading.get_ident())
    with _held_guard:
        depth = _held.get(key, 0)
        _held[key] = depth + 1
    if depth:
        try:
            yield
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    path = state_dir() / "locks" / f"{lab}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, or the process dies
            yield
        finally:
            with _held_guard:
                _held.pop(key, None)
