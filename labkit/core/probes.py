"""Probes: what a node or a pod can send, with typed results.

Each probe runs a real tool (ping, curl, iperf3, a Python socket) inside the
source's network namespace and parses its output.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

from labkit.core.endpoint import Endpoint, Target
from labkit.dataplane.script import q
from labkit.errors import LabkitError


def address_of(target: Target) -> str:
    if isinstance(target, Endpoint):
        return str(target.ip)
    return str(target)


def label_of(target: Target) -> str:
    return target.name if isinstance(target, Endpoint) else str(target)


# -- ping -----------------------------------------------------------------------


@dataclass(frozen=True)
class PingResult:
    sent: int
    received: int
    rtt_min: float | None = None
    rtt_avg: float | None = None
    rtt_max: float | None = None
    error: str = ""

    @property
    def loss(self) -> float:
        """Fraction lost, 0.0 to 1.0."""
        return 1.0 if self.sent == 0 else (self.sent - self.received) / self.sent

    @property
    def ok(self) -> bool:
        return self.received > 0

    def __str__(self) -> str:
        if not self.ok:
            return f"{self.received}/{self.sent} {self.error}".strip()
        return f"{self.received}/{self.sent} avg {self.rtt_avg:.2f} ms"


_SENT = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_RTT = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)/")


def parse_ping(output: str) -> PingResult:
    counts = _SENT.search(output)
    if not counts:
        return PingResult(0, 0, error=output.strip().splitlines()[-1] if output.strip() else "no output")
    sent, received = int(counts.group(1)), int(counts.group(2))
    rtt = _RTT.search(output)
    errors = [line for line in output.splitlines() if "too long" in line or "Unreachable" in line]
    if rtt:
        low, avg, high = (float(rtt.group(i)) for i in (1, 2, 3))
        return PingResult(sent, received, low, avg, high)
    return PingResult(sent, received, error=errors[0].strip() if errors else "no reply")


def ping(
    source: Endpoint,
    target: Target,
    *,
    count: int = 3,
    interval: float = 0.2,
    timeout: float = 1.0,
    size: int | None = None,
    dont_fragment: bool = False,
) -> PingResult:
    """ICMP echo from `source`; `dont_fragment` with `size` probes the path MTU."""
    words = ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", str(timeout)]
    if size is not None:
        words += ["-s", str(size)]
    if dont_fragment:
        words += ["-M", "do"]
    words.append(address_of(target))
    deadline = count * (interval + timeout) + 3
    result = source.exec(" ".join(words), check=False, timeout=deadline)
    return parse_ping(result.output)


# -- TCP and UDP (a Python socket in the source's namespace) --------------------

_SOCKET_PROBE = r"""
import json, socket, sys, time
kind, host, port, timeout, payload = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
start = time.perf_counter()
out = {"ok": False, "error": "", "reply": "", "local": ""}
try:
    if kind == "tcp":
        s = socket.create_connection((host, port), timeout=timeout)
        out["local"] = "%s:%d" % s.getsockname()
        if payload:
            s.sendall(payload.encode()); s.settimeout(timeout)
            out["reply"] = s.recv(4096).decode(errors="replace")
        out["ok"] = True
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(timeout)
        s.connect((host, port)); s.send((payload or "ping").encode())
        out["local"] = "%s:%d" % s.getsockname()
        out["reply"] = s.recv(4096).decode(errors="replace"); out["ok"] = True
except Exception as exc:
    out["error"] = type(exc).__name__ + (": " + str(exc) if str(exc) else "")
out["ms"] = (time.perf_counter() - start) * 1000
print(json.dumps(out))
"""


@dataclass(frozen=True)
class TcpResult:
    ok: bool
    ms: float
    error: str = ""
    reply: str = ""
    local: str = ""

    @property
    def refused(self) -> bool:
        return "Refused" in self.error

    @property
    def served_by(self) -> str:
        """The pod name the echo server put first on its greeting line."""
        return self.reply.split()[0] if self.reply.split() else ""

    def __str__(self) -> str:
        return f"ok {self.ms:.1f} ms" if self.ok else self.error


UdpResult = TcpResult


def _socket_probe(source: Endpoint, kind: str, target: Target, port: int, timeout: float, payload: str) -> TcpResult:
    command = f"python3 -c {q(_SOCKET_PROBE)} {kind} {q(address_of(target))} {port} {timeout} {q(payload)}"
    result = source.exec(command, check=False, timeout=timeout + 5)
    try:
        data = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return TcpResult(False, 0.0, f"probe failed: {result.output.strip()[-200:]}")
    return TcpResult(data["ok"], data["ms"], data["error"], data["reply"], data["local"])


def tcp_connect(source: Endpoint, target: Target, port: int, *, timeout: float = 2.0, payload: str = "") -> TcpResult:
    """Open a TCP connection (and read the first reply when `payload` is sent)."""
    return _socket_probe(source, "tcp", target, port, timeout, payload)


def udp_request(source: Endpoint, target: Target, port: int, *, timeout: float = 2.0, payload: str = "ping") -> TcpResult:
    """Send one datagram and wait for one reply (the echo server names itself)."""
    return _socket_probe(source, "udp", target, port, timeout, payload)


# -- HTTP -----------------------------------------------------------------------


@dataclass(frozen=True)
class HttpResult:
    status: int
    body: str
    seconds: float
    error: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400

    @property
    def pod(self) -> str:
        """Which pod answered (from the echo server)."""
        return str(self.data.get("pod", ""))

    @property
    def client_ip(self) -> str:
        """The client address the echo server saw."""
        return str(self.data.get("client_ip", ""))

    def __str__(self) -> str:
        return f"HTTP {self.status} from {self.pod or '?'}" if self.status else self.error


def http_get(
    source: Endpoint,
    target: Target,
    port: int = 8080,
    path: str = "/",
    *,
    host: str | None = None,
    timeout: float = 3.0,
) -> HttpResult:
    url = f"http://{address_of(target)}:{port}{path}"
    words = ["curl", "-sS", "-m", str(timeout), "-o", "-", "-w", q("\n%{http_code} %{time_total}")]
    if host:
        words += ["-H", q(f"Host: {host}")]
    words.append(q(url))
    result = source.exec(" ".join(words), check=False, timeout=timeout + 5)
    return parse_curl(result.stdout, result.stderr)


def parse_curl(stdout: str, stderr: str = "") -> HttpResult:
    body, _, trailer = stdout.rpartition("\n")
    parts = trailer.split()
    status = int(parts[0]) if parts and parts[0].isdigit() else 0
    seconds = float(parts[1]) if len(parts) > 1 else 0.0
    data: dict[str, Any] = {}
    if body.lstrip().startswith("{"):
        try:
            data = json.loads(body)
        except json.JSONDecodeError:
            data = {}
    return HttpResult(status, body, seconds, stderr.strip() if not status else "", data)


# -- iperf3 -----------------------------------------------------------------------


@dataclass(frozen=True)
class IperfResult:
    protocol: str
    bits_per_second: float
    retransmits: int | None = None
    jitter_ms: float | None = None
    lost_percent: float | None = None
    streams: int = 1
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def gbit_per_s(self) -> float:
        return self.bits_per_second / 1e9

    def __str__(self) -> str:
        text = f"{self.gbit_per_s:.2f} Gbit/s {self.protocol}"
        if self.lost_percent is not None:
            text += f", loss {self.lost_percent:.2f}%"
        return text


def parse_iperf(document: dict[str, Any]) -> IperfResult:
    if "error" in document:
        raise LabkitError(f"iperf3: {document['error']}")
    end = document["end"]
    protocol = document["start"]["test_start"]["protocol"]
    streams = int(document["start"]["test_start"].get("num_streams", 1))
    if protocol == "UDP":
        total = end["sum"]
        return IperfResult(
            "UDP", total["bits_per_second"], None, total.get("jitter_ms"), total.get("lost_percent"),
            streams, document,
        )  # fmt: skip
    return IperfResult(
        "TCP", end["sum_received"]["bits_per_second"], end["sum_sent"].get("retransmits"),
        streams=streams, raw=document,
    )  # fmt: skip


class _NotListening(Exception):
    pass


def iperf(
    client: Endpoint,
    server: Endpoint,
    *,
    seconds: float = 3,
    udp: bool = False,
    streams: int = 1,
    bitrate: str | None = None,
    length: int | None = None,
    port: int = 5201,
    target: Target | None = None,
) -> IperfResult:
    """iperf3 from `client` to a one-off server started on `server`.

    `target` overrides the address dialled (a Service VIP in front of `server`).
    """
    server.exec(f"iperf3 -s -1 -D -p {port} --logfile /tmp/iperf3-{port}.log", timeout=10)
    words = ["iperf3", "-J", "-c", address_of(target or server), "-p", str(port), "-t", str(seconds)]
    words += ["-P", str(streams)]
    if udp:
        words += ["-u", "-b", bitrate or "0"]
    elif bitrate:
        words += ["-b", bitrate]
    if length:
        words += ["-l", str(length)]

    @retry(
        retry=retry_if_exception_type(_NotListening),
        stop=stop_after_delay(5),
        wait=wait_fixed(0.1),
        reraise=True,
    )
    def run() -> IperfResult:
        result = client.exec(" ".join(words), check=False, timeout=seconds + 20)
        try:
            document = json.loads(result.stdout)
        except json.JSONDecodeError:
            raise LabkitError(f"iperf3 printed no JSON: {result.output[-300:]}") from None
        if "refused" in str(document.get("error", "")):
            raise _NotListening()
        return parse_iperf(document)

    try:
        return run()
    finally:
        server.exec(f"pkill -f 'iperf3 -s -1 -D -p {port} ' || true", check=False)

