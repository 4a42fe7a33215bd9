"""Does a lab network behave as one L2 segment? Probed with two throwaway nodes.

Unencapsulated backends (host-gw, bgp) put pod addresses on the underlay, and
router nodes put other segments' addresses on it. Docker drops such frames on
an internal network when its host passes bridged frames to iptables
(br_netfilter loaded): the isolation rules of internal networks accept only
the network's own subnet. A host fixes that by accepting bridged frames in
Docker's DOCKER-USER chain (scripts/setup-host.sh does), which keeps networks
internal: a bridged frame never leaves its bridge.
"""

from __future__ import annotations

import os
from ipaddress import IPv4Network

from labkit.runtime.docker import DockerRuntime

# RFC 2544's benchmarking range: no lab pool, no pinned subnet of ours uses it.
PROBE_SUPERNET = IPv4Network("198.18.0.0/16")
FOREIGN_ADDRESS = "198.19.255.1"  # outside the probe network's subnet
HOST_FIX = "iptables -I DOCKER-USER -m physdev --physdev-is-bridged -j ACCEPT"


def probe_l2_underlay(runtime: DockerRuntime | None = None) -> tuple[bool, str]:
    """(ok, detail): a packet to an address outside the subnet crosses the network."""
    from labkit.runtime.images import node_image

    runtime = runtime or DockerRuntime()
    image = node_image(runtime.client)
    lab = f"labkit-probe-l2-{os.getpid()}"
    taken = runtime.taken_subnets()
    subnet = next(
        (s for s in PROBE_SUPERNET.subnets(new_prefix=28) if not any(s.overlaps(t) for t in taken)),
        None,
    )
    if subnet is None:
        return False, f"probe not run: no free subnet in {PROBE_SUPERNET}"
    hosts = list(subnet.hosts())
    try:
        runtime.create_network(lab, "segment", subnet)
        for name, address in (("a", hosts[1]), ("b", hosts[2])):
            runtime.create_node(lab, name, image, {"segment": address})
        runtime.exec(f"{lab}-a", f"ip addr add {FOREIGN_ADDRESS}/32 dev eth0", timeout=10)
        result = runtime.exec(
            f"{lab}-b",
            f"ip route add {FOREIGN_ADDRESS}/32 via {hosts[1]} && "
            f"ping -n -c 2 -i 0.2 -W 1 {FOREIGN_ADDRESS}",
            check=False,
            timeout=15,
        )
    finally:
        runtime.remove_lab(lab)
    if " 0 received" not in result.stdout and result.ok:
        return True, ""
    return False, (
        "drops frames whose addresses are outside the lab network's subnet (Docker's "
        "isolation of internal networks, seen through br_netfilter); fix on the host, as root: "
        f"`{HOST_FIX}` (scripts/setup-host.sh does it)"
    )
