"""Checks of the L4 entry points: each names a known service's port of its protocol."""

from __future__ import annotations

from collections.abc import Iterator

from labkit.errors import Problem
from labkit.topology.checks.common import known
from labkit.topology.l4_entries import parse_target
from labkit.topology.model import Topology


def check_ingress_l4(topology: Topology) -> Iterator[Problem]:
    ingress = topology.ingress
    if ingress is None:
        return
    if ingress.udp and ingress.controller == "haproxy":
        yield Problem(
            ("ingress", "udp"), "haproxy has no UDP proxying: UDP entries need controller nginx"
        )
    for protocol, table in (("TCP", ingress.tcp), ("UDP", ingress.udp)):
        field = protocol.lower()
        for port, text in table.items():
            path = ("ingress", field, port)
            if not 1 <= port <= 65535 or (protocol == "TCP" and port == ingress.port):
                yield Problem(
                    path, f"port {port} is not free for an L4 entry (1-65535, not the HTTP port)"
                )
            try:
                service, wanted = parse_target(text)
            except ValueError as exc:
                yield Problem(path, str(exc))
                continue
            spec = topology.services.get(service)
            if spec is None:
                yield Problem(
                    path,
                    f"unknown service {service!r} (known: {known(topology.services) or 'none'})",
                )
                continue
            number = int(wanted) if wanted.isdigit() else None
            ports = [p for p in spec.ports if wanted == p.name or number == p.port]
            if not any(p.protocol == protocol for p in ports):
                yield Problem(path, f"service {service!r} has no {protocol} port {wanted!r}")
