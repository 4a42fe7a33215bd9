"""The hosts file: which Docker engines a lab spreads over, and where nodes go (pure).

    hosts:
      h1: {url: "unix:///var/run/docker.sock"}
      h2:
        url: tcp://10.1.2.3:2376
        tls: {ca: ca.pem, cert: cert.pem, key: key.pem}
      h3: {url: "ssh://admin@10.1.2.4"}
    nodes:          # optional placement: node -> host
      node-1: h2
    l2: {parent: eth0}   # optional: the hosts share a segment on eth0 (macvlan for VRRP)

Hosts keep their file order: unpinned nodes are spread over them in that
order. Errors name file:line:col like the topology loader's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from labkit.errors import LabkitError, Problem, TopologyError
from labkit.topology.loader import compose_text, pydantic_message, where_of
from labkit.topology.names import NAME_PATTERN

SCHEMES = ("unix", "tcp", "ssh")
PLAIN_TCP = (
    "plain tcp:// gives anyone on the network root on that host (the Docker API is root): "
    "add `tls: {ca: ..., cert: ..., key: ...}` (the engine started with --tlsverify), "
    "or use ssh://user@host"
)


class InventoryError(TopologyError):
    """The hosts file is wrong (exit code 2); nothing was created."""

    def __init__(self, problems: list[Problem], source: str = "") -> None:
        super().__init__(problems, source)
        header = f"invalid hosts file {source}" if source else "invalid hosts file"
        lines = "\n".join(f"  {problem}" for problem in problems)
        LabkitError.__init__(self, f"{header}:\n{lines}")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TlsSettings(Strict):
    """Client certificates for a tcp:// engine (paths relative to the hosts file)."""

    ca: str = Field(description="CA certificate that signed the engine's certificate")
    cert: str = Field(description="client certificate")
    key: str = Field(description="client key")
    verify: bool = Field(default=True, description="check the engine's certificate against ca")


class Host(Strict):
    url: str = Field(description="Docker Engine URL: unix://, tcp:// (with tls) or ssh://")
    tls: TlsSettings | None = None
    advertise: str | None = Field(
        default=None,
        description="Address the other hosts reach this one at (swarm); default: the URL's host",
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        scheme = urlparse(url).scheme
        if scheme not in SCHEMES:
            raise ValueError(
                f"must start with {', '.join(s + '://' for s in SCHEMES)} (got {url!r})"
            )
        return url

    @model_validator(mode="after")
    def _tcp_needs_tls(self) -> Host:
        scheme = urlparse(self.url).scheme
        if scheme == "tcp" and self.tls is None:
            raise ValueError(PLAIN_TCP)
        if scheme != "tcp" and self.tls is not None:
            raise ValueError(f"tls applies to tcp:// only (this host is {scheme}://)")
        return self

    @property
    def scheme(self) -> str:
        return urlparse(self.url).scheme

    @property
    def address(self) -> str | None:
        """Where the swarm reaches this host: `advertise`, else the URL's host name."""
        return self.advertise or urlparse(self.url).hostname


class SharedL2(Strict):
    """Opt-in: the hosts share an L2 segment on `parent`; networks that carry VRRP
    become a macvlan network on it (not `internal`: a macvlan cannot be, and cross hosts)."""

    parent: str = Field(description="The hosts' interface on the shared segment, e.g. eth0")
    parents: list[str] = Field(
        default_factory=list,
        description="More interfaces on the same segment: the engine allows one macvlan "
        "network per interface, so each lab's L2 network takes a free one",
    )

    @property
    def interfaces(self) -> list[str]:
        return [self.parent, *self.parents]


class Inventory(Strict):
    hosts: dict[str, Host] = Field(min_length=1)
    nodes: dict[str, str] = Field(
        default_factory=dict, description="Placement: node name -> host name"
    )
    l2: SharedL2 | None = None

    @field_validator("hosts")
    @classmethod
    def _names_are_labels(cls, hosts: dict[str, Host]) -> dict[str, Host]:
        import re

        for name in hosts:
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"host name {name!r}: lower-case letters, digits and dashes")
        return hosts

    @property
    def host_names(self) -> list[str]:
        return list(self.hosts)


def parse_inventory(text: str, source: str = "<string>") -> Inventory:
    try:
        data, marks = compose_text(text, source)
    except TopologyError as error:
        raise InventoryError(error.problems, source) from None
    try:
        inventory = Inventory.model_validate(data)
    except ValidationError as exc:
        problems = [
            Problem(_problem_path(err), pydantic_message(err), where_of(marks, tuple(err["loc"])))
            for err in exc.errors()
        ]
        raise InventoryError(problems, source) from None
    problems = [
        Problem(("nodes", node), f"unknown host {host!r} (hosts: {', '.join(inventory.hosts)})")
        for node, host in inventory.nodes.items()
        if host not in inventory.hosts
    ]
    if problems:
        located = [Problem(p.path, p.message, where_of(marks, p.path)) for p in problems]
        raise InventoryError(located, source)
    return _resolve_tls_paths(inventory, Path(source).parent if source != "<string>" else None)


def _problem_path(err: Any) -> tuple[str | int, ...]:
    """Pydantic's location without the validator names it adds (model-level checks)."""
    return tuple(part for part in err["loc"] if not str(part).startswith(("function-", "tagged")))


def _resolve_tls_paths(inventory: Inventory, folder: Path | None) -> Inventory:
    """TLS file paths relative to the hosts file, not to the current directory."""
    if folder is None:
        return inventory
    hosts = {}
    for name, host in inventory.hosts.items():
        if host.tls is not None:
            paths = {key: str(folder / getattr(host.tls, key)) for key in ("ca", "cert", "key")}
            host = host.model_copy(update={"tls": host.tls.model_copy(update=paths)})
        hosts[name] = host
    return inventory.model_copy(update={"hosts": hosts})


def load_inventory(path: str | Path) -> Inventory:
    file = Path(path)
    if not file.is_file():
        raise InventoryError([Problem((), f"no such file: {file}")], str(file))
    return parse_inventory(file.read_text(), source=str(file))


# --- placement ---------------------------------------------------------------


def place_nodes(
    nodes: Sequence[str],
    hosts: Sequence[str],
    *,
    topology_pins: Mapping[str, str] | None = None,
    inventory_pins: Mapping[str, str] | None = None,
    source: str = "",
) -> dict[str, str]:
    """Node -> host. Pinned nodes go where pinned; the rest fill the least loaded host,
    ties broken by file order (so without pins: round robin in file order).

    A pin (topology `nodes.X.host`, or the hosts file's `nodes:`) to an unknown
    host, an inventory pin of an unknown node, or two pins that disagree is an error.
    """
    topology_pins = dict(topology_pins or {})
    inventory_pins = dict(inventory_pins or {})
    known = ", ".join(hosts)
    problems = [
        Problem(("nodes", node, "host"), f"unknown host {host!r} (hosts: {known})")
        for node, host in topology_pins.items()
        if host not in hosts
    ]
    for node, host in inventory_pins.items():
        if node not in nodes:
            problems.append(
                Problem(("nodes", node), "the hosts file places a node the topology lacks")
            )
        elif host not in hosts:
            problems.append(Problem(("nodes", node), f"unknown host {host!r} (hosts: {known})"))
        elif topology_pins.get(node, host) != host:
            problems.append(
                Problem(
                    ("nodes", node, "host"),
                    f"pinned to {topology_pins[node]!r} here but to {host!r} in the hosts file",
                )
            )
    if problems:
        raise TopologyError(problems, source)
    pins = {**inventory_pins, **topology_pins}
    placement = {node: pins[node] for node in nodes if node in pins}
    load = {host: 0 for host in hosts}
    for host in placement.values():
        load[host] += 1
    for node in nodes:
        if node not in placement:
            host = min(hosts, key=lambda h: (load[h], hosts.index(h)))
            placement[node] = host
            load[host] += 1
    return {node: placement[node] for node in nodes}
