"""Whether several Docker hosts share an L2 segment (what VRRP needs across hosts).

Each host's own addresses are read from a short-lived host-network container;
a subnet every host is on is only a candidate until the first host's ARP
requests for the others' addresses are answered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Network, ip_interface

from labkit.concurrency import parallel
from labkit.runtime.docker import UNCONFINED, DockerRuntime
from labkit.runtime.engine_host import run_on_engine_host

# Interfaces that are Docker's or a container's own, not a host's segment.
NOT_A_SEGMENT = ("lo", "docker", "br-", "veth", "vx-", "vxlan", "ov-", "cni", "flannel")


def shared_segments(addresses: Mapping[str, Sequence[tuple[str, str]]]) -> list[IPv4Network]:
    """Subnets on which every host has an interface (host -> [(interface, address/prefix)]).

    Pure: a candidate for a shared L2 segment, which an ARP exchange then confirms.
    Docker's and containers' own interfaces are left out (every host has the same
    docker_gwbridge subnet, which is no shared segment).
    """
    per_host = []
    for entries in addresses.values():
        subnets = {
            ip_interface(address).network
            for interface, address in entries
            if not interface.startswith(NOT_A_SEGMENT) and ":" not in address
        }
        per_host.append({s for s in subnets if isinstance(s, IPv4Network) and s.prefixlen < 32})
    if not per_host:
        return []
    common = set.intersection(*per_host)
    return sorted(common)


ARP_PROBE = r"""
import socket, struct, sys, time
iface, source, target = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((iface, 0)); s.settimeout(0.3)
mac = s.getsockname()[4]
frame = b"\xff" * 6 + mac + b"\x08\x06" + struct.pack(
    "!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, socket.inet_aton(source), b"\0" * 6,
    socket.inet_aton(target))
deadline = time.time() + 2
while time.time() < deadline:
    s.send(frame)
    try:
        while True:
            data = s.recv(64)
            if data[20:22] == b"\0\x02" and data[28:32] == socket.inet_aton(target):
                print(data[22:28].hex()); sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)
"""

HOST_ADDRESSES = "ip -j -4 addr show up"


def host_addresses(
    hosts: Mapping[str, DockerRuntime], image: str
) -> dict[str, list[tuple[str, str]]]:
    """Per host, its (interface, address/prefix) pairs."""

    def addresses(name: str) -> list[tuple[str, str]]:
        raw = host_network_run(hosts[name], image, HOST_ADDRESSES, timeout=20)
        return [
            (link["ifname"], f"{entry['local']}/{entry['prefixlen']}")
            for link in json.loads(raw or "[]")
            for entry in link.get("addr_info", [])
        ]

    return dict(zip(hosts, parallel(addresses, list(hosts)), strict=True))


def shared_l2(hosts: Mapping[str, DockerRuntime], image: str) -> tuple[bool, str]:
    """Whether all hosts share an L2 segment: a common subnet, confirmed by ARP replies."""
    addresses = host_addresses(hosts, image)
    for subnet in shared_segments(addresses):
        on_subnet = {
            host: next(
                (iface, str(ip_interface(a).ip))
                for iface, a in entries
                if ip_interface(a).network == subnet and not iface.startswith(NOT_A_SEGMENT)
            )
            for host, entries in addresses.items()
        }
        first, *others = list(on_subnet)
        iface, source = on_subnet[first]
        replies = {
            other: host_network_run(
                hosts[first], image,
                ["python3", "-c", ARP_PROBE, iface, source, on_subnet[other][1]], timeout=10,
            ).strip()
            for other in others
        }  # fmt: skip
        if all(replies.values()):
            where = ", ".join(f"{h} {i} {a}" for h, (i, a) in on_subnet.items())
            return True, f"hosts share {subnet} at L2 (ARP answered): {where}"
    return False, "no subnet that every host is on answers ARP from the others"


def host_network_run(
    runtime: DockerRuntime, image: str, command: str | list[str], *, timeout: float
) -> str:
    """A command's stdout, run in the host's own network namespace (engine_host.py)."""
    argv = ["sh", "-c", command] if isinstance(command, str) else command
    return run_on_engine_host(
        runtime.client, image, ["timeout", str(int(timeout)), *argv],
        cap_add=["NET_RAW", "NET_ADMIN"], security_opt=UNCONFINED,
    ).stdout  # fmt: skip
