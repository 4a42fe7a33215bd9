"""Send three gratuitous ARP replies for an address (run inside a node container)."""

import socket
import struct
import sys

interface, address = sys.argv[1], sys.argv[2]
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
sock.bind((interface, 0))
mac = sock.getsockname()[4]
ip = socket.inet_aton(address)
arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, mac, ip, b"\xff" * 6, ip)
for _ in range(3):
    sock.send(b"\xff" * 6 + mac + b"\x08\x06" + arp)
