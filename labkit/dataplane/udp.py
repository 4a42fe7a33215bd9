"""The `udp` backend, flannel's original userspace encapsulation.

Per peer, a persistent TUN device carries the routes to that peer's pod
subnet; a socat process reads IP packets from it and sends each as one UDP
datagram to the peer's port 8285 (and writes what the peer sends back into
it). socat is a real userspace tunnel, which is the point: this backend exists
to be measured against the kernel's VXLAN.

The devices are created and configured before socat attaches to them, so the
routes exist from the start and nothing waits for socat to create a device.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from labkit.dataplane.script import q, script

PORT = 8285
OVERHEAD = 28  # outer IPv4 20 + UDP 8; the inner IP packet travels as is
DEVICE_PREFIX = "lkudp-"
# 4 MiB socket buffers (SO_RCVBUFFORCE/SO_SNDBUFFORCE: above net.core.*mem_max,
# nodes have CAP_NET_ADMIN). With the default 208 KiB, a descheduled socat
# overflows its receive buffer and TCP collapses on the drops; the bench
# should measure the cost of userspace encapsulation, not that.
SOCKET_BUFFER = 4 * 1024 * 1024
BUFFERS = f"setsockopt-int=1:33:{SOCKET_BUFFER},setsockopt-int=1:32:{SOCKET_BUFFER}"
STATE_DIR = "/var/lib/labkit/udp"
LOG_DIR = "/var/log/labkit"


@dataclass(frozen=True)
class UdpPeer:
    """One tunnel: the device on this node and where its datagrams go."""

    device: str
    subnet: IPv4Network  # the peer's pod subnet, routed into `device`
    address: IPv4Address  # the peer's underlay address
    local: IPv4Address  # this node's address towards the peer (the socket binds it)


def device_name(index: int) -> str:
    """The TUN device towards the peer at `index` in the cluster (≤ 15 chars)."""
    return f"{DEVICE_PREFIX}{index}"


def tunnel_command(peer: UdpPeer) -> str:
    """The socat process of one tunnel, detached; its pid kept for `stop`.

    Every tunnel's socket binds local port 8285 (reuseaddr); each is connected
    to its peer, so the kernel hands each datagram to the socket of its sender.
    """
    tun = f"TUN,tun-type=tun,tun-name={peer.device},iff-no-pi,iff-up"
    udp = f"UDP:{peer.address}:{PORT},bind={peer.local},sourceport={PORT},reuseaddr,{BUFFERS}"
    pidfile = f"{STATE_DIR}/{peer.device}.pid"
    inner = f"echo $$ > {pidfile}; exec socat -d {tun} {udp}"
    return f"setsid -f sh -c {q(inner)} > {LOG_DIR}/{peer.device}.log 2>&1 < /dev/null"


def stop_command(device: str) -> str:
    pidfile = f"{STATE_DIR}/{device}.pid"
    return f"[ -f {pidfile} ] && kill $(cat {pidfile}) 2>/dev/null; rm -f {pidfile}"


def udp_script(own_subnet: IPv4Network, peers: list[UdpPeer], underlay_mtu: int = 1500) -> str:
    """Per peer: a TUN device with the route to its pod subnet, and a socat on it."""
    lines = [f"mkdir -p {STATE_DIR} {LOG_DIR}"]
    for peer in peers:
        device = peer.device
        lines += [
            stop_command(device) + " || true",
            f"ip link del {device} 2>/dev/null || true",
            f"ip tuntap add dev {device} mode tun",
            f"ip link set {device} mtu {underlay_mtu - OVERHEAD}",
            # Like flannel.1: the node's own subnet address, so traffic the node
            # itself sends to remote pods leaves with a pod-network source.
            f"ip addr add {own_subnet.network_address}/32 dev {device}",
            f"ip link set {device} up",
            f"ip route replace {q(peer.subnet)} dev {device}",
            tunnel_command(peer),
        ]
    return script(lines)


def attached_script(devices: list[str]) -> str:
    """Prints `<device> up|down`: up once socat holds the device (it has carrier)."""
    return "; ".join(
        f'[ "$(cat /sys/class/net/{d}/carrier 2>/dev/null)" = 1 ] '
        f"&& echo '{d} up' || echo '{d} down'"
        for d in devices
    )
