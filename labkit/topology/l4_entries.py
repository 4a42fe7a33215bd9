"""The L4 entry points a topology declares (`ingress.tcp`/`ingress.udp`), parsed. Pure.

As ingress-nginx's `tcp-services`/`udp-services` ConfigMaps: listen port ->
`namespace/service:port` (namespace optional: default; port by number or name).
"""

from __future__ import annotations

from dataclasses import dataclass

from labkit.topology.model import Ingress, object_key


@dataclass(frozen=True)
class L4Target:
    protocol: str  # TCP | UDP
    port: int  # where the edge node listens
    service: str  # the service's key in the topology
    service_port: str  # its port, by name or number as written

    @property
    def name(self) -> str:
        return f"l4-{self.protocol.lower()}-{self.port}"


def parse_target(text: str) -> tuple[str, str]:
    """`namespace/service:port` (the namespace may be left out: default) -> (service key, port)."""
    where, sep, port = text.rpartition(":")
    if not sep or not where or not port:
        raise ValueError(f"{text!r} is not namespace/service:port")
    namespace, _, service = where.rpartition("/")
    return object_key(namespace or "default", service), port


def l4_targets(ingress: Ingress) -> list[L4Target]:
    """Every declared L4 port, TCP first, by port (a malformed one is left to the checks)."""
    found: list[L4Target] = []
    for protocol, table in (("TCP", ingress.tcp), ("UDP", ingress.udp)):
        for port, text in sorted(table.items()):
            try:
                service, service_port = parse_target(text)
            except ValueError:
                continue
            found.append(L4Target(protocol, port, service, service_port))
    return found
