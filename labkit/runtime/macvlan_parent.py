"""The shared parent of a lab's macvlan network: a veth pair on the engine's host.

A macvlan network passes frames between its members' interfaces directly, as
a physical segment would: no Linux bridge and no host netfilter on the way
(Docker's bridge networks have both). Its members need a parent link in the
engine's host namespace that is up and has a carrier, and nothing else: a
veth pair whose ends carry no address, IPv6 off (no link-local address, so
the host never speaks on the segment), used by nothing but this network.

The engine may be on another machine (DOCKER_HOST), so the pair is made and
removed by a short-lived container in the engine's host network namespace
(engine_host.py).
Each end's alias names the lab, so `down --all` finds a pair whose network a
killed run never made.
"""

from __future__ import annotations

import hashlib
from shlex import quote as q
from typing import Any

from labkit.errors import LabkitError
from labkit.runtime.engine_host import run_on_engine_host

PREFIX = "lkm"  # every parent's name starts so: lkm + 10 hex + a|b (15 chars at most)
ALIAS = "labkit-lab="


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


def run_script(client: Any, image: str, script: str) -> None:
    """`script` (`ip` commands) on the engine's host; a failure says `ip`'s words."""
    result = run_on_engine_host(client, image, ["sh", "-ec", script], cap_add=["NET_ADMIN"])
    if not result.ok:
        raise LabkitError(f"on the engine's host, `ip` failed: {result.output.strip()[-500:]}")
