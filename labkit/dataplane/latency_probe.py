"""A client that times many small exchanges from inside a pod or node. Pure: the script.

One python3 process per run (no process start per sample): `dns` sends an A
query over UDP and waits for the answer with the query's id; `tcp-connect`
opens and closes a connection (the handshake only); `udp` sends a datagram
and waits for one reply. It prints a JSON list of milliseconds per sample,
null for a sample that failed (timeout, refused, a wrong answer).
"""

from __future__ import annotations

import json

from labkit.dataplane.script import q

KINDS = ("dns", "tcp-connect", "udp")

_SCRIPT = r"""
import json, socket, struct, sys, time
kind, host, port, count, name, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], float(sys.argv[6])
def query(ident):
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\0"
    return struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + struct.pack(">HH", 1, 1)
samples = []
for i in range(count):
    start = time.perf_counter()
    try:
        if kind == "tcp-connect":
            socket.create_connection((host, port), timeout=timeout).close()
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(timeout)
            ident = (i * 7919 + 1) & 0xFFFF
            s.sendto(query(ident) if kind == "dns" else b"ping", (host, port))
            reply = s.recv(4096)
            s.close()
            if kind == "dns" and (struct.unpack(">H", reply[:2])[0] != ident or struct.unpack(">H", reply[6:8])[0] == 0):
                raise ValueError("no answer")
        samples.append((time.perf_counter() - start) * 1000)
    except Exception:
        samples.append(None)
print(json.dumps(samples))
"""


def probe_command(
    kind: str, host: str, port: int, count: int, *, name: str = "", timeout: float = 1.0
) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown probe {kind!r} (known: {', '.join(KINDS)})")
    args = " ".join(q(str(a)) for a in (kind, host, port, count, name or "-", timeout))
    return f"python3 -c {q(_SCRIPT)} {args}"


def parse_samples(output: str) -> list[float | None]:
    found = json.loads(output.strip().splitlines()[-1])
    return [None if x is None else float(x) for x in found]
