"""The `bgp` backend, Calico style: no encapsulation, routes learned by BIRD.

Every node runs BIRD (bird2). It announces its own pod subnet (a static
blackhole route for the block: the pods are reachable through the bridge's
connected route, which the kernel prefers at metric 0) and installs the
subnets its iBGP peers announce into the kernel (`proto bird`, metric 32).
Sessions form a full mesh in one private AS, or go through route reflectors.

Peers' next hops are resolved recursively (sessions are multihop), through
the underlay's connected subnets (`protocol direct`) and the kernel's routes
to other segments via routers (learned), so peering works across routers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from labkit.dataplane.script import script, write_file

CONFIG_PATH = "/etc/bird/bird.conf"
SOCKET = "/run/bird/bird.ctl"
PID_FILE = "/run/bird/bird.pid"
LOG_FILE = "/var/log/labkit/bird.log"
STATIC_PROTOCOL = "pods"
KERNEL_METRIC = 32  # above the bridge's connected route (0), so pods win locally
# The underlay interfaces Docker gives a node (the pod bridge is cni0).
UNDERLAY_INTERFACES = "eth*"


@dataclass(frozen=True)
class BgpPeer:
    node: str
    address: IPv4Address  # the peer's underlay address
    local: IPv4Address  # this node's address the session starts from
    rr_client: bool = False  # this node reflects routes to the peer


@dataclass(frozen=True)
class BgpNode:
    """What BIRD on one node needs to know."""

    node: str
    router_id: IPv4Address
    asn: int
    pod_subnet: IPv4Network | None  # None on a router: it announces nothing
    pod_cidr: IPv4Network
    peers: tuple[BgpPeer, ...]
    hold_time: int = 9
    keepalive: int = 3
    reflector: bool = False


def protocol_name(node: str) -> str:
    """A BIRD symbol for the session to `node` (no dashes in BIRD symbols)."""
    return "peer_" + node.replace("-", "_")


def _export(spec: BgpNode) -> str:
    """What BGP announces: a node its own block, a reflector also what it
    learned over BGP, a router nothing."""
    if spec.pod_subnet is None:
        return "none"
    own = f'where proto = "{STATIC_PROTOCOL}"'
    return f"{own} || source = RTS_BGP" if spec.reflector else own


def _own_block(subnet: IPv4Network | None) -> list[str]:
    if subnet is None:
        return []
    return [
        "",
        "# This node's pod block.",
        f"protocol static {STATIC_PROTOCOL} {{",
        "  ipv4;",
        f"  route {subnet} blackhole;",
        "}",
    ]


def bird_config(spec: BgpNode) -> str:
    """bird.conf for one node."""
    lines = [
        f"# BIRD on {spec.node}, rendered by labkit (backend bgp, AS {spec.asn})",
        f'log "{LOG_FILE}" all;',
        f"router id {spec.router_id};",
        "",
        "protocol device {",
        "  scan time 2;",
        "}",
        "",
        "# Underlay subnets: what peers' next hops resolve through.",
        "protocol direct underlay {",
        "  ipv4;",
        f'  interface "{UNDERLAY_INTERFACES}";',
        "}",
        "",
        "# Learn the routes to other underlay segments (via routers); install the",
        "# peers' pod subnets and this node's blackhole.",
        "protocol kernel {",
        "  learn;",
        "  scan time 5;",
        f"  metric {KERNEL_METRIC};",
        "  ipv4 {",
        f"    import where net !~ [ {spec.pod_cidr}+ ];",
        "    export where source ~ [ RTS_BGP, RTS_STATIC ];",
        "  };",
        "}",
        *_own_block(spec.pod_subnet),
        "",
        "template bgp labkit_peer {",
        f"  local as {spec.asn};",
        "  multihop;",
        f"  hold time {spec.hold_time};",
        f"  keepalive time {spec.keepalive};",
        "  # Peers start together: retry fast instead of BIRD's default 120 s.",
        "  connect retry time 1;",
        "  error wait time 1, 5;",
        "  ipv4 {",
        "    gateway recursive;",
        "    import all;",
        f"    export {_export(spec)};",
        "  };",
        "}",
    ]
    for peer in spec.peers:
        lines += [
            "",
            f"protocol bgp {protocol_name(peer.node)} from labkit_peer {{",
            f'  description "{peer.node}";',
            f"  local {peer.local} as {spec.asn};",
            f"  neighbor {peer.address} as {spec.asn};",
            *(["  rr client;"] if peer.rr_client else []),
            "}",
        ]
    return "\n".join(lines) + "\n"


def start_script(spec: BgpNode) -> str:
    """Write bird.conf and start BIRD (it daemonizes; its output goes to a file)."""
    return script(
        [
            "mkdir -p /run/bird /var/log/labkit",
            write_file(CONFIG_PATH, bird_config(spec)),
            f"bird -p -c {CONFIG_PATH}",  # a config error fails here, with BIRD's message
            f"bird -c {CONFIG_PATH} -s {SOCKET} -P {PID_FILE} "
            "> /var/log/labkit/bird.out 2>&1 < /dev/null",
        ]
    )


def stop_script() -> str:
    """Stop BIRD cleanly: it tells its peers (Cease), which withdraw its routes."""
    return birdc("down")


def birdc(command: str) -> str:
    return f"birdc -s {SOCKET} {command}"


@dataclass(frozen=True)
class ProtocolState:
    name: str
    proto: str
    state: str  # up | down | start
    info: str  # for BGP: Established, Active, Connect...

    @property
    def established(self) -> bool:
        return self.proto == "BGP" and self.info.startswith("Established")


_PROTOCOL_LINE = re.compile(
    r"^(?P<name>\S+)\s+(?P<proto>\S+)\s+(?P<table>\S+)\s+(?P<state>\S+)\s+"
    r"(?P<since>\S+(?: \S+:\S+)?)\s*(?P<info>.*)$"
)


def parse_protocols(output: str) -> dict[str, ProtocolState]:
    """`birdc show protocols` -> {name: state}."""
    result: dict[str, ProtocolState] = {}
    for line in output.splitlines():
        if line.startswith(("BIRD ", "Name ")) or not line.strip():
            continue
        match = _PROTOCOL_LINE.match(line)
        if match:
            name = match["name"]
            result[name] = ProtocolState(
                name, match["proto"], match["state"], match["info"].strip()
            )
    return result


def parse_bird_routes(output: str) -> set[IPv4Network]:
    """Destinations of `ip -4 route show proto bird` (blackholes included)."""
    routes = set()
    for line in output.splitlines():
        words = line.split()
        if not words:
            continue
        prefix = words[1] if words[0] in ("blackhole", "unreachable", "prohibit") else words[0]
        try:
            routes.add(IPv4Network(prefix))
        except ValueError:
            continue
    return routes
