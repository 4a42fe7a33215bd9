"""The `host-gw` backend, flannel style: no encapsulation, one route per peer.

Each peer's pod subnet is routed via that peer's underlay address, which must
be on a segment both nodes share (validation refuses other layouts).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from labkit.dataplane.script import batch, script


def host_gw_script(peers: dict[IPv4Network, IPv4Address]) -> str:
    """Routes: each peer's pod subnet via its underlay address (the next hop)."""
    return script(
        [
            batch(
                "ip", [f"route replace {subnet} via {gateway}" for subnet, gateway in peers.items()]
            )
        ]
    )
