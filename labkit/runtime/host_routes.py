"""The host's own IPv4 routes: subnets a lab must not reuse."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from ipaddress import IPv4Network
from pathlib import Path


def host_routes(route_file: str = "/proc/net/route") -> list[IPv4Network]:
    """Destinations of the host's IPv4 routes (default route left out)."""
    try:
        lines = Path(route_file).read_text().splitlines()[1:]
    except OSError:
        return []
    return parse_route_table(lines)


def parse_route_table(lines: Iterable[str]) -> list[IPv4Network]:
    routes = []
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        destination = socket.inet_ntoa(struct.pack("<L", int(fields[1], 16)))
        mask = socket.inet_ntoa(struct.pack("<L", int(fields[7], 16)))
        if mask == "0.0.0.0":
            continue
        routes.append(IPv4Network(f"{destination}/{mask}", strict=False))
    return routes
