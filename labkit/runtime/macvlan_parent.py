"""The shared parent of a lab's macvlan network: a veth pair on the engine's host.

A macvlan network passes frames between its members' interfaces directly, as
a physical segment would: no Linux bridge and no host netfilter on the way
(Docker's bridge networks have both). Its members need a parent link in the
engine's host namespace that is up and has a carrier, and nothing else: a
veth pair whose ends carry no address, IPv6 off (no link-local address, so
the host never speaks on the segment), used by nothing but this network.

The engine may be on another machine (DOCKER_HOST), so the pair is made and
removed by a short-lived container in the engine's host network namespace.
Each end's alias names the lab, so `down --all` finds a pair whose network a
killed run never made.
"""

from __future__ import annotations

import hashlib
from shlex import quote as q
from typing import Any

from labkit.errors import LabkitError
from labkit.runtime.base import LAB_LABEL

PREFIX = "lkm"  # every parent's name starts so: lkm + 10 hex + a|b (15 chars at most)
ALIAS = "labkit-lab="
DONE = "labkit-macvlan-parent: done"


def parent_name(network: str) -> str:
    """The end a macvlan network named `network` (the engine's name) sits on."""
    return f"{PREFIX}{hashlib.sha256(network.encode()).hexdigest()[:10]}a"


def is_parent(name: str) -> bool:
    return name.startswith(PREFIX) and len(name) == len(PREFIX) + 11 and name[-1] == "a"


def create_script(parent: str, lab: str, mtu: int) -> str:
    """The pair, made afresh (a killed run's pair of the same name goes first)."""
    peer = parent[:-1] + "b"
    ends = (parent, peer)
    return "\n".join(
        [
            f"ip link del {q(parent)} 2>/dev/null || true",
            f"ip link add {q(parent)} mtu {mtu} type veth peer name {q(peer)} mtu {mtu}",
            *(f"ip link set {q(end)} addrgenmode none 2>/dev/null || true" for end in ends),
            *(f"ip link set {q(end)} alias {q(ALIAS + lab)} up" for end in ends),
        ]
    )


def delete_script(parents: list[str]) -> str:
    return "\n".join(f"ip link del {q(p)} 2>/dev/null || true" for p in parents) or "true"


def sweep_script(lab: str | None) -> str:
    """Every parent pair of `lab` (None: of any lab) still on the host."""
    keep = f'[ "$a" = {q(ALIAS + lab)} ] || continue; ' if lab else ""
    return (
        f'for d in /sys/class/net/{PREFIX}*a; do [ -e "$d" ] || continue; '
        f'a=$(cat "$d/ifalias"); case "$a" in {ALIAS}*) {keep}'
        'ip link del "${d##*/}" 2>/dev/null || true;; esac; done'
    )


def run_on_engine_host(client: Any, image: str, script: str) -> None:
    """`script` in the engine's host network namespace (a container that only runs `ip`).

    As `docker run --rm` does: the engine removes the container when it exits
    (auto_remove), so a caller killed meanwhile leaves none behind; its stderr
    is read through an attach made before the start, and a last line says the
    script got to its end (the exit code is gone with the container).
    """
    api = client.api
    created = api.create_container(
        image,
        ["sh", "-ec", f"{script}\necho {DONE} >&2"],
        entrypoint=[],
        labels={LAB_LABEL: "probe"},  # killed before its start: `remove_dead_probes`
        host_config=api.create_host_config(
            network_mode="host", cap_add=["NET_ADMIN"], auto_remove=True
        ),
    )
    stderr = api.attach(created["Id"], stdout=False, stderr=True, stream=True, logs=True)
    api.start(created["Id"])
    said = b"".join(stderr).decode(errors="replace")
    if DONE not in said:
        raise LabkitError(f"on the engine's host, `ip` failed: {said.strip()[-500:]}")
