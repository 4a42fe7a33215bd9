"""The ingress routing table: rules + current upstream servers, decided. Pure.

Both controllers (nginx, haproxy) render the same `RoutingTable`, so they
route alike. The semantics follow Kubernetes Ingress as ingress-nginx
implements it:

- a rule with a host only matches requests for that host; rules without a
  host serve every other host;
- a host that has rules but none matching the path gets the default backend
  (the host-less rules do not apply to it);
- `Prefix` matches whole path elements (`/api` matches `/api` and `/api/x`,
  not `/apix`), a trailing slash is ignored; `Exact` matches the path only;
- the longest path wins, `Exact` before `Prefix` on a tie;
- no default backend configured: the proxy itself answers 404.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from labkit.dataplane import ingress_tls
from labkit.topology.model import Ingress, Service, slug

if TYPE_CHECKING:
    from labkit.dataplane.ingress_l4 import L4Entry

DEFAULT_404_BODY = "default backend - 404"


@dataclass(frozen=True, order=True)
class UpstreamServer:
    """One place an upstream sends to: a pod (mode `endpoints`) or a Service VIP."""

    ip: IPv4Address
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class Upstream:
    """A rule's backend (service + port) with the servers it currently has."""

    name: str
    servers: tuple[UpstreamServer, ...]


@dataclass(frozen=True)
class Route:
    host: str | None  # None: any host without rules of its own
    path: str  # normalised: a Prefix path has no trailing slash (except "/")
    exact: bool
    upstream: str

    @property
    def sort_key(self) -> tuple[int, int]:
        """Match order inside one host: longest path first, Exact before Prefix."""
        return (-len(self.path), 0 if self.exact else 1)


@dataclass(frozen=True)
class RoutingTable:
    port: int
    routes: tuple[Route, ...]  # grouped by host (hosts first, host-less last), in match order
    upstreams: tuple[Upstream, ...]
    default_upstream: str | None  # None: the proxy answers 404 itself
    l4: tuple[L4Entry, ...] = ()  # TCP/UDP ports forwarded to services (dataplane/ingress_l4.py)
    tls_port: int | None = None  # None: no HTTPS (dataplane/ingress_tls.py)
    certificates: tuple[ingress_tls.Certificate, ...] = ()  # the given ones (not the default)

    def hosts(self) -> list[str]:
        """The hosts that have rules, in file order."""
        seen: dict[str, None] = {}
        for route in self.routes:
            if route.host is not None:
                seen.setdefault(route.host, None)
        return list(seen)

    def routes_for(self, host: str | None) -> list[Route]:
        return [route for route in self.routes if route.host == host]

    def upstream(self, name: str) -> Upstream:
        return next(u for u in self.upstreams if u.name == name)


# (service, service port key) -> the servers behind it now. The key is the
# port's name, else its number as text (what endpoints are keyed by).
Servers = Mapping[tuple[str, str], Sequence[UpstreamServer]]


def normalise_path(path: str, exact: bool) -> str:
    if exact or path == "/":
        return path
    return path.rstrip("/") or "/"


def port_key(service: Service, port: int | str) -> str:
    """The key of the service port a rule names by name or number ("" if none)."""
    for candidate in service.ports:
        key = candidate.name or str(candidate.port)
        if port in (candidate.name, candidate.port, key):
            return key
    return ""


def routing_table(
    ingress: Ingress, services: Mapping[str, Service], servers: Servers
) -> RoutingTable:
    """The table both renderers read: routes in match order and their upstreams.

    One upstream per service port, however the rules name the port.
    """
    upstreams: dict[str, Upstream] = {}

    def use(service: str, port: int | str) -> str:
        key = port_key(services[service], port)
        name = f"{slug(service)}-{key}"  # `shop/web` -> `shop_web-http`: a name nginx takes
        if name not in upstreams:
            upstreams[name] = Upstream(name, tuple(sorted(set(servers.get((service, key), ())))))
        return name

    by_host: dict[str | None, list[Route]] = {}
    for rule in ingress.rules:
        exact = rule.path_type == "Exact"
        route = Route(
            rule.host, normalise_path(rule.path, exact), exact, use(rule.service, rule.port)
        )
        by_host.setdefault(rule.host, [])
        if not any((r.path, r.exact) == (route.path, route.exact) for r in by_host[rule.host]):
            by_host[rule.host].append(route)  # a duplicate (refused by validation) keeps the first
    ordered: list[Route] = []
    for host in [h for h in by_host if h is not None] + ([None] if None in by_host else []):
        ordered += sorted(by_host[host], key=lambda r: r.sort_key)
    default = None
    if ingress.default_backend is not None:
        default = use(ingress.default_backend.service, ingress.default_backend.port)
    return RoutingTable(
        ingress.port,
        tuple(ordered),
        tuple(upstreams.values()),
        default,
        tls_port=ingress.tls_port if ingress.tls else None,
        certificates=ingress_tls.certificates(ingress),
    )


@dataclass(frozen=True)
class Controller:
    """What labkit needs to run one proxy: its renderer and its shell commands.

    The commands are plain text for a node's shell; `check` runs the proxy's
    own configuration checker on a candidate file before it is put in place.
    """

    name: str
    config_path: str
    render: Callable[[RoutingTable], str]
    check: Callable[[str], str]  # candidate path -> command, exit 0 when valid
    start: str
    reload: str  # graceful: in-flight requests finish on the old workers
    running: str  # exit 0 while the proxy's master process lives


def config_text(header: str, *sections: Iterable[str]) -> str:
    """A proxy's configuration file: its fixed header, then the rendered sections' lines."""
    lines = [header.rstrip("\n")]
    for section in sections:
        lines += section
    return "\n".join(lines) + "\n"


def master_running(pid_file: str, process: str) -> str:
    """Exit 0 while the pid file names a live `process` (not a reused pid)."""
    return f'test -s {pid_file} && grep -qx {process} "/proc/$(cat {pid_file})/comm"'
