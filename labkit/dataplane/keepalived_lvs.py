"""keepalived `virtual_server` blocks: LVS in front of the L4 entries. Pure.

The classic pair: keepalived holds the VRRP VIP and programs IPVS, one
virtual server per L4 entry at the VIP, its real servers the entry's
upstream (a TCP_CHECK per real server for TCP). `lb_kind NAT` rewrites
the destination (replies must come back through the director); `DR`
rewrites only the MAC (real servers hold the VIP themselves). Needs IPVS in
the kernel: the vrrp layer probes it and refuses `ingress.lvs` without it.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from labkit.dataplane.ingress_l4 import L4Entry
from labkit.topology.edge_model import Lvs


def virtual_servers(vip: IPv4Address, entries: list[L4Entry], lvs: Lvs) -> list[str]:
    lines: list[str] = []
    for entry in entries:
        target = entry.target
        lines += [
            "",
            f"virtual_server {vip} {target.port} {{",
            "    delay_loop 2",
            f"    lb_algo {lvs.scheduler}",
            f"    lb_kind {lvs.mode}",
            f"    protocol {target.protocol}",
        ]
        for server in entry.servers:
            lines += [f"    real_server {server.ip} {server.port} {{", "        weight 1"]
            if target.protocol == "TCP":
                lines += ["        TCP_CHECK {", "            connect_timeout 1", "        }"]
            lines.append("    }")
        lines.append("}")
    return lines
