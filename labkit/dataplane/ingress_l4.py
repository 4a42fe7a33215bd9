"""L4 entry points on the edge nodes: TCP and UDP ports forwarded to a Service. Pure.

Declared as ingress-nginx reads its `tcp-services`/`udp-services` ConfigMaps:
`ingress.tcp: {9000: "default/echo:9000"}` (listen port -> `namespace/service:port`,
the port by number or name). The upstream follows `ingress.upstream`: the
Service's ready endpoints (pod IP, target port) or its ClusterIP.

nginx serves both in its `stream` block (UDP with `proxy_responses 1`, one
reply per datagram); haproxy serves TCP in `mode tcp` frontends (it has no
UDP proxying: the topology check refuses `udp` with haproxy).
"""

from __future__ import annotations

from dataclasses import dataclass

from labkit.dataplane.ingress_routes import UpstreamServer
from labkit.topology.l4_entries import L4Target

STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"


@dataclass(frozen=True)
class L4Entry:
    target: L4Target
    servers: tuple[UpstreamServer, ...]


def nginx_stream(entries: list[L4Entry]) -> list[str]:
    """nginx's `stream` block (after `http`); empty without L4 entries."""
    if not entries:
        return []
    lines = ["", "stream {", "    proxy_connect_timeout 1s;"]
    for entry in entries:
        target = entry.target
        if entry.servers:
            lines += ["", f"    upstream {target.name} {{"]
            lines += [f"        server {server} max_fails=0;" for server in entry.servers]
            lines.append("    }")
        udp = target.protocol == "UDP"
        lines += ["", "    server {", f"        listen {target.port}{' udp' if udp else ''};"]
        if udp:
            lines += ["        proxy_responses 1;", "        proxy_timeout 2s;"]
        # No endpoint: nginx refuses an empty upstream; send to a closed port, so clients fail fast.
        lines.append(f"        proxy_pass {target.name if entry.servers else '127.0.0.1:1'};")
        lines.append("    }")
    lines.append("}")
    return lines


def nginx_load_module(entries: list[L4Entry]) -> list[str]:
    """The module line that must come first in nginx.conf (Debian builds `stream` as a module)."""
    return [f"load_module {STREAM_MODULE};"] if entries else []


def haproxy_tcp(entries: list[L4Entry]) -> list[str]:
    """A `mode tcp` frontend and backend per TCP entry (UDP entries are nginx's)."""
    lines: list[str] = []
    for entry in entries:
        target = entry.target
        if target.protocol != "TCP":
            continue
        lines += [
            "",
            f"frontend {target.name}",
            "    mode tcp",
            f"    bind :{target.port}",
            f"    default_backend {target.name}",
            "",
            f"backend {target.name}",
            "    mode tcp",
            "    balance roundrobin",
        ]
        lines += [f"    server {server.ip}-{server.port} {server}" for server in entry.servers]
    return lines
