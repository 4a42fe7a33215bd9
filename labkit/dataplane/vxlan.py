"""The `vxlan` backend, flannel style.

Device flannel.1 (VNI 1, UDP 8472) with learning off: labkit programs every
peer's route, ARP entry and FDB entry itself, as flanneld does.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from labkit.dataplane.script import batch, script

DEVICE = "flannel.1"
VNI = 1
PORT = 8472
OVERHEAD = 50  # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14


def vtep_mac(underlay_ip: IPv4Address) -> str:
    """A stable, locally administered MAC for a node's VTEP, from its address."""
    return "0e:6b:" + ":".join(f"{byte:02x}" for byte in underlay_ip.packed)


def underlay_device(address: IPv4Address) -> str:
    """Shell that prints the interface holding `address` (Docker names them): the second
    word of `ip -o`'s first line, split (no globbing) by the shell: one process, not three."""
    return f"$(set -f; set -- $(ip -o -4 addr show to {address}/32); echo $2)"


def vxlan_script(
    local_ip: IPv4Address,
    own_subnet: IPv4Network,
    peers: dict[IPv4Network, IPv4Address],
    underlay_mtu: int = 1500,
) -> str:
    """Create flannel.1 and program a route, neighbour and FDB entry per peer."""
    # Only a node built before has the device (a fresh one starts no process for it).
    lines = [
        f"[ ! -e /sys/class/net/{DEVICE} ] || ip link del {DEVICE}",
        f"ip link add {DEVICE} mtu {underlay_mtu - OVERHEAD} address {vtep_mac(local_ip)} "
        f"type vxlan id {VNI} local {local_ip} dev {underlay_device(local_ip)} dstport {PORT} "
        "nolearning",
        # Checksum offload stays on: turning it off (flannel's workaround for
        # an older kernels' bug behind flannel#1279: NATed packets through
        # VXLAN sent with bad checksums) also turns off GSO and
        # costs 6x the throughput here (1.8 vs 12 Gbit/s). A lab test sends
        # data through VXLAN, with and without NAT, and checks it arrives intact.
    ]
    device = [f"addr add {own_subnet.network_address}/32 dev {DEVICE}", f"link set {DEVICE} up"]
    neighbours, routes, fdb = [], [], []
    for subnet, peer_ip in peers.items():
        vtep = subnet.network_address
        mac = vtep_mac(peer_ip)
        neighbours.append(f"neigh replace {vtep} lladdr {mac} dev {DEVICE} nud permanent")
        routes.append(f"route replace {subnet} via {vtep} dev {DEVICE} onlink")
        fdb.append(f"fdb append {mac} dev {DEVICE} dst {peer_ip}")
    return script([*lines, batch("ip", device + neighbours + routes), batch("bridge", fdb)])
