"""MetalLB's layer 2 speaker, in small: one per node, run by labkit.

Every speaker sends a heartbeat to the others (UDP, memberlist's port) and
counts a peer alive while it heard one within `dead_after` seconds. For each
LoadBalancer address it elects the owner among its alive candidates as
MetalLB does (sha256 of `node#ip`, lowest first); the owner puts the address
on its underlay interface (so its kernel answers ARP for it) and sends
gratuitous ARP at once and every 1.1 s for 5 s, as MetalLB's announcer does.
The configuration (JSON) is re-read when its content changes; the status file says
what this node announces and which peers it counts alive.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import time

PORT = 7946
GARP_EVERY, GARP_FOR = 1.1, 5.0


def order(candidates: list[str], ip: str) -> list[str]:
    return sorted(candidates, key=lambda node: hashlib.sha256(f"{node}#{ip}".encode()).digest())


def interface_of(address: str) -> str:
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        words = line.split()
        if words[3].split("/")[0] == address:
            return words[1].split("@")[0]
    raise SystemExit(f"no interface has {address}")


def gratuitous_arp(interface: str, ip: str) -> None:
    """An ARP request for `ip` from `ip`, broadcast: neighbours update their caches."""
    with open(f"/sys/class/net/{interface}/address") as file:
        mac = file.read().strip()
    hw = bytes.fromhex(mac.replace(":", ""))
    addr = socket.inet_aton(ip)
    frame = b"\xff" * 6 + hw + struct.pack("!H", 0x0806)
    frame += struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + hw + addr + b"\x00" * 6 + addr
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as raw:
        raw.bind((interface, 0))
        raw.send(frame)


def ip_addr(action: str, ip: str, interface: str) -> None:
    subprocess.run(["ip", "addr", action, f"{ip}/32", "dev", interface], capture_output=True)


class Speaker:
    def __init__(self, config_path: str, status_path: str) -> None:
        self.config_path, self.status_path = config_path, status_path
        self.text = ""
        self.config: dict = {}
        self.heard: dict[str, tuple[float, bool]] = {}  # node -> (last heard, joined)
        self.announced: dict[str, float] = {}  # ip -> when this node took it
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setblocking(False)
        self.bound = False
        self.started = time.monotonic()

    def reload(self) -> None:
        # By content: files labkit copies in carry no useful mtime.
        with open(self.config_path) as file:
            text = file.read()
        if text == self.text:
            return
        self.text, self.config = text, json.loads(text)
        if not self.bound:
            self.sock.bind((self.config["node_ip"], PORT))
            self.interface = interface_of(self.config["node_ip"])
            self.bound = True

    def joined(self) -> bool:
        """Just started, a speaker only listens and tells it is joining: it hears its
        peers before it takes part (memberlist joins before MetalLB announces), and
        its peers do not yield an address to it before it can announce it."""
        return time.monotonic() - self.started >= 2 * self.config["dead_after"]

    def exchange(self) -> None:
        hello = f"{self.config['node']} {int(self.joined())}".encode()
        for peer_ip in self.config["peers"].values():
            with contextlib.suppress(OSError):  # a peer gone: it just stops being heard
                self.sock.sendto(hello, (peer_ip, PORT))
        while True:
            try:
                data, _ = self.sock.recvfrom(256)
            except BlockingIOError:
                return
            node, _, joined = data.decode().partition(" ")
            self.heard[node] = (time.monotonic(), joined == "1")

    def alive(self, *, joined_only: bool = False) -> set[str]:
        now, dead_after, me = time.monotonic(), self.config["dead_after"], self.config["node"]
        alive = {
            n
            for n, (t, joined) in self.heard.items()
            if now - t < dead_after and n in self.config["peers"] and (joined or not joined_only)
        }
        return alive | ({me} if self.joined() or not joined_only else set())

    def step(self) -> None:
        me, now = self.config["node"], time.monotonic()
        eligible = self.alive(joined_only=True)
        wanted = set()
        for ip, candidates in self.config["addresses"].items() if self.joined() else ():
            ranked = order([c for c in candidates if c in eligible], ip)
            if ranked and ranked[0] == me:
                wanted.add(ip)
        for ip in sorted(wanted - set(self.announced)):
            ip_addr("add", ip, self.interface)
            self.announced[ip] = now
            gratuitous_arp(self.interface, ip)
        for ip in sorted(set(self.announced) - wanted):
            ip_addr("del", ip, self.interface)
            del self.announced[ip]
        for ip, since in self.announced.items():
            elapsed = now - since
            if elapsed < GARP_FOR and int(elapsed / GARP_EVERY) != int(
                (elapsed - self.tick) / GARP_EVERY
            ):
                gratuitous_arp(self.interface, ip)
        status = {
            "node": me,
            "joined": self.joined(),
            "announced": sorted(self.announced),
            "alive": sorted(self.alive()),
            "time": time.time(),
        }
        tmp = self.status_path + ".tmp"
        with open(tmp, "w") as file:
            json.dump(status, file)
        os.replace(tmp, self.status_path)

    def run(self) -> None:
        while True:
            self.reload()
            self.tick = self.config["interval"]
            self.exchange()
            self.step()
            time.sleep(self.tick)


if __name__ == "__main__":
    Speaker(sys.argv[1], sys.argv[2]).run()
