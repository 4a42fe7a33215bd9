"""LoadBalancer addresses over BGP, as MetalLB's BGP mode does it: BIRD configurations. Pure.

Each announcing node runs BIRD as its speaker: an eBGP session to the
router (the topology's `cluster.load_balancer.peer`), a static /32 per
address it announces (BIRD's table only: the node's kernel routes nothing
for it; kube-proxy's rules take the packets). The router's BIRD learns the
/32s from every node and installs them as one multipath route (ECMP),
hashing on ports as well so one client's connections spread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address

from labkit.dataplane.bgp import protocol_name
from labkit.dataplane.script import script, write_file

NODE_ASN = 64512  # the speakers' AS (MetalLB's usual myASN)
CONFIG = "/etc/bird/lb.conf"
SOCKET = "/run/bird/lb.ctl"
PID = "/run/bird/lb.pid"
LOG = "/var/log/labkit/bird-lb.log"
STATIC = "lb_addresses"
PEER = "lb_router"


def _header(what: str, router_id: IPv4Address, hold: int, keepalive: int) -> list[str]:
    return [
        f"# BIRD {what}, rendered by labkit (LoadBalancer addresses, MetalLB's BGP mode)",
        f'log "{LOG}" all;',
        f"router id {router_id};",
        "protocol device { scan time 2; }",
        "template bgp lb {",
        f"  hold time {hold};",
        f"  keepalive time {keepalive};",
        "  connect retry time 1;",
        "  error wait time 1, 5;",
        "}",
    ]


def speaker_config(
    node_ip: IPv4Address,
    router_ip: IPv4Address,
    router_asn: int,
    addresses: Iterable[IPv4Address],
    hold: int = 3,
    keepalive: int = 1,
) -> str:
    """BIRD on a node: announce these /32s to the router (none: the session stays up)."""
    routes = [f"  route {ip}/32 blackhole;" for ip in sorted(addresses)]
    lines = [
        *_header("speaker", node_ip, hold, keepalive),
        f"protocol static {STATIC} {{",
        "  ipv4;",
        *routes,
        "}",
        f"protocol bgp {PEER} from lb {{",
        f"  local {node_ip} as {NODE_ASN};",
        f"  neighbor {router_ip} as {router_asn};",
        f'  ipv4 {{ import none; export where proto = "{STATIC}"; next hop self; }};',
        "}",
    ]
    return "\n".join(lines) + "\n"


def router_config(
    router_ip: IPv4Address,
    router_asn: int,
    nodes: Mapping[str, IPv4Address],
    hold: int = 3,
    keepalive: int = 1,
) -> str:
    """BIRD on the router: a session per node, the /32s into the kernel merged (ECMP)."""
    lines = [
        *_header("router", router_ip, hold, keepalive),
        "protocol kernel {",
        "  merge paths on;",
        "  ipv4 { import none; export where source = RTS_BGP; };",
        "}",
    ]
    for node, ip in sorted(nodes.items()):
        lines += [
            f"protocol bgp {protocol_name(node)} from lb {{",
            f'  description "{node}";',
            f"  local {router_ip} as {router_asn};",
            f"  neighbor {ip} as {NODE_ASN};",
            "  ipv4 { import all; export none; };",
            "}",
        ]
    return "\n".join(lines) + "\n"


def deploy_script(config: str, *, router: bool = False) -> str:
    """Write the configuration, then reconfigure BIRD, or start it. The router also
    hashes multipath routes on ports (policy 1), so one client's flows spread."""
    running = f"birdc -s {SOCKET} show status >/dev/null 2>&1"
    return script(
        [
            "mkdir -p /run/bird /var/log/labkit",
            *(["sysctl -qw net.ipv4.fib_multipath_hash_policy=1"] if router else []),
            write_file(CONFIG, config),
            f"bird -p -c {CONFIG}",
            f"if {running}; then birdc -s {SOCKET} configure >/dev/null; "
            f"else bird -c {CONFIG} -s {SOCKET} -P {PID} > /var/log/labkit/bird-lb.out 2>&1 "
            "< /dev/null; fi",
        ]
    )


def routes_command(ip: IPv4Address) -> str:
    """The router's kernel route to an address (its next hops)."""
    return f"ip -4 route show {ip}/32"


def next_hops(route_output: str) -> set[IPv4Address]:
    """The gateways of `ip route show` output (one path or a multipath route)."""
    words = route_output.split()
    return {IPv4Address(words[i + 1]) for i, w in enumerate(words[:-1]) if w == "via"}
