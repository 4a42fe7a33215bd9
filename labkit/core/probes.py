"""Probes: what a node or a pod can send, with typed results.

Each probe runs a real tool (ping, curl, iperf3, a Python socket) inside the
source's network namespace and parses its output.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

from labkit.concurrency import parallel
from labkit.core.endpoint import Endpoint, Target
from labkit.dataplane.script import q
from labkit.errors import LabkitError

if TYPE_CHECKING:
    from labkit.core.handles import NodeHandle, PodHandle


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
    def status(self) -> str:
        """One of OUTCOMES (ping says "Packet filtered" for admin-prohibited)."""
        if self.ok:
            return "ok"
        if "filtered" in self.error or "prohibited" in self.error.lower():
            return "denied"
        if "Unreachable" in self.error:
            return "unreachable"
        return "timeout" if self.error == "no reply" else "error"

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
        return PingResult(
            0, 0, error=output.strip().splitlines()[-1] if output.strip() else "no output"
        )
    sent, received = int(counts.group(1)), int(counts.group(2))
    rtt = _RTT.search(output)
    errors = [
        line
        for line in output.splitlines()
        if any(word in line for word in ("too long", "Unreachable", "filtered", "rohibited"))
    ]
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


# -- what happened to a probe ---------------------------------------------------

# ICMP destination-unreachable codes (RFC 1812) a policy REJECT sends: net, host
# and administratively prohibited. The renderer uses 13 (icmp-admin-prohibited).
ICMP_UNREACHABLE = 3
PROHIBITED_CODES = frozenset({9, 10, 13})
PORT_UNREACHABLE_CODE = 3
OUTCOMES = ("ok", "denied", "refused", "timeout", "unreachable", "error")


def classify(ok: bool, error: str = "", icmp: tuple[int, int] | None = None) -> str:
    """What happened: ok; denied (rejected by policy); refused (no listener);
    timeout; unreachable (no route or no host); error (anything else).

    The ICMP type/code the kernel queued (IP_RECVERR) decides when present; the
    errno is the fallback: a REJECT's admin-prohibited surfaces as EHOSTUNREACH,
    like a dead host, so without the code only EACCES/EPERM (a local REJECT or
    DROP in the sender's own netfilter) say "denied".
    """
    if ok:
        return "ok"
    if icmp is not None and icmp[0] == ICMP_UNREACHABLE:
        if icmp[1] in PROHIBITED_CODES:
            return "denied"
        return "refused" if icmp[1] == PORT_UNREACHABLE_CODE else "unreachable"
    if "ECONNREFUSED" in error or "Refused" in error:
        return "refused"
    if "EACCES" in error or "EPERM" in error or "Permission denied" in error:
        return "denied"
    if "timed out" in error or "Timeout" in error:
        return "timeout"
    if "UNREACH" in error or "unreachable" in error.lower() or "No route" in error:
        return "unreachable"
    return "error"


# -- TCP, UDP and ICMP echo, many targets in one exec (a Python program) --------

# One job per target: [kind ("tcp" | "udp" | "icmp"), address, port, timeout, payload].
# Prints one JSON result per job, in order. Sockets queue the ICMP error that
# failed them (IP_RECVERR): its type/code tells a policy denial from the rest.
_BATCH_PROBE = r"""
import ctypes, errno, json, os, random, select, socket, struct, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
RESEND = 0.2

def icmp_error(s):
    try:
        _, ancillary, _, _ = s.recvmsg(1, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
    except OSError:
        return None, ""
    for _, _, data in ancillary:
        _, origin, kind, code = struct.unpack_from("=IBBB", data)
        if origin == 2:  # SO_EE_ORIGIN_ICMP
            return [kind, code], socket.inet_ntoa(data[20:24])
    return None, ""

def dial(job):
    kind, host, port, timeout, payload = job
    out = {"ok": False, "error": "", "reply": "", "local": "", "icmp": None, "by": ""}
    stream = kind == "tcp"
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if stream else socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_IP, IP_RECVERR, 1)
    s.settimeout(timeout)
    start, phase = time.perf_counter(), "connect"
    try:
        s.connect((host, port))
        phase = "reply"  # said in the error: a slow listener vs. a path that drops
        out["local"] = "%s:%d" % s.getsockname()
        if not stream:
            s.send((payload or "ping").encode())
        elif payload:
            s.sendall(payload.encode())
        if payload or not stream:
            out["reply"] = s.recv(4096).decode(errors="replace")
        out["ok"] = True
    except Exception as exc:
        name = errno.errorcode.get(getattr(exc, "errno", None) or 0, "")
        out["error"] = type(exc).__name__ + (" " + name if name else "") + (": " + str(exc) if str(exc) else "") + " (" + phase + ")"
        out["icmp"], out["by"] = icmp_error(s)
    out["ms"] = (time.perf_counter() - start) * 1000
    s.close()
    return out

def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF

def echo_all(jobs):
    # One raw socket for every echo, matched by (id, sequence); unanswered echoes
    # are sent again every RESEND s until the timeout (a burst may lose some).
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 1 << 22)
    ident = random.getrandbits(16)  # one per source: pods of one node probe at once
    results = [{"ok": False, "error": "timed out", "reply": "", "local": "", "icmp": None, "by": "", "ms": 0.0} for _ in jobs]
    sent_at = {}
    def send(index):
        header = struct.pack("!BBHHH", 8, 0, 0, ident, index)
        try:
            s.sendto(struct.pack("!BBHHH", 8, 0, checksum(header + b"labkit"), ident, index) + b"labkit", (jobs[index][1], 0))
        except OSError as exc:
            results[index]["error"] = str(exc)
            return
        sent_at.setdefault(index, time.perf_counter())
    start = time.perf_counter()
    deadline = start + max([job[3] for job in jobs] + [0.1])
    waiting, next_send = set(range(len(jobs))), start
    while waiting and time.perf_counter() < deadline:
        if time.perf_counter() >= next_send:
            for index in sorted(waiting):
                send(index)
            next_send = time.perf_counter() + RESEND
        ready, _, _ = select.select([s], [], [], 0.01)
        if not ready:
            continue
        packet, (sender, _) = s.recvfrom(2048)
        inner = packet[(packet[0] & 0x0F) * 4:]
        kind, code = inner[0], inner[1]
        if kind == 0:
            got_id, seq = struct.unpack_from("!HH", inner, 4)
        elif kind in (3, 11) and len(inner) >= 36:
            quoted = inner[8 + (inner[8] & 0x0F) * 4:]
            got_id, seq = struct.unpack_from("!HH", quoted, 4)
        else:
            continue
        if got_id != ident or seq not in waiting:
            continue
        if kind == 0 and sender != jobs[seq][1]:
            continue
        waiting.discard(seq)
        ms = (time.perf_counter() - sent_at[seq]) * 1000
        if kind == 0:
            results[seq].update(ok=True, error="", reply=sender, ms=ms)
        else:
            results[seq].update(error="ICMP %d/%d from %s" % (kind, code, sender), icmp=[kind, code], by=sender, ms=ms)
    return results

def run_jobs(jobs):
    results = [None] * len(jobs)
    echo = [i for i, job in enumerate(jobs) if job[0] == "icmp"]
    for index, result in zip(echo, echo_all([jobs[i] for i in echo]) if echo else []):
        results[index] = result
    dials = [i for i, job in enumerate(jobs) if job[0] != "icmp"]
    with ThreadPoolExecutor(min(16, max(1, len(dials)))) as pool:
        for index, result in zip(dials, pool.map(dial, [jobs[i] for i in dials])):
            results[index] = result
    return results

def in_netns(name, jobs, out):
    # A thread's network namespace is its own: enter the pod's, then probe from it
    # (the sockets and the dialling threads started here all belong to it).
    if name:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open("/var/run/netns/" + name, os.O_RDONLY)
        if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), "setns " + name)
        os.close(fd)
    out[name] = run_jobs(jobs)

spec = json.loads(sys.argv[1])
if isinstance(spec, list):
    print(json.dumps(run_jobs(spec)))
else:  # {netns name ("" for the node itself): jobs}: many sources of one node at once
    out = {}
    threads = [threading.Thread(target=in_netns, args=(n, j, out)) for n, j in spec.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(out))
"""


@dataclass(frozen=True)
class TcpResult:
    ok: bool
    ms: float
    error: str = ""
    reply: str = ""
    local: str = ""
    status: str = ""  # one of OUTCOMES; derived from ok and error when not given
    icmp: tuple[int, int] | None = None  # the ICMP type/code that failed the probe
    rejected_by: str = ""  # who sent that ICMP error (a node, for a policy denial)

    def __post_init__(self) -> None:
        if not self.status:
            object.__setattr__(self, "status", classify(self.ok, self.error, self.icmp))

    @property
    def refused(self) -> bool:
        return self.status == "refused"

    @property
    def denied(self) -> bool:
        return self.status == "denied"

    @property
    def served_by(self) -> str:
        """The pod name the echo server put first on its greeting line."""
        return self.reply.split()[0] if self.reply.split() else ""

    def __str__(self) -> str:
        if self.ok:
            return f"ok {self.ms:.1f} ms" + (f" from {self.served_by}" if self.served_by else "")
        return f"{self.status} {self.ms:.1f} ms: {self.error}"


UdpResult = TcpResult


def result_of(data: dict[str, Any]) -> TcpResult:
    """One result of the batch program."""
    icmp = tuple(data["icmp"]) if data.get("icmp") else None
    return TcpResult(
        data["ok"], data["ms"], data["error"], data["reply"], data["local"],
        icmp=(icmp[0], icmp[1]) if icmp else None, rejected_by=data.get("by", ""),
    )  # fmt: skip


@dataclass(frozen=True)
class Job:
    """One probe of a batch: what to send to which address."""

    kind: str  # "tcp" | "udp" | "icmp"
    address: str
    port: int = 0
    timeout: float = 2.0
    payload: str = ""


def probe_many(source: Endpoint, jobs: list[Job]) -> list[TcpResult]:
    """Run every job from `source` in one exec (TCP/UDP in threads, echoes on one
    raw socket); results in the order of `jobs`."""
    if not jobs:
        return []
    rows = [[j.kind, j.address, j.port, j.timeout, j.payload] for j in jobs]
    command = f"python3 -c {q(_BATCH_PROBE)} {q(json.dumps(rows))}"
    deadline = 2 * max(j.timeout for j in jobs) + 5 + len(jobs) * 0.05
    result = source.exec(command, check=False, timeout=deadline)
    try:
        data = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        failed = TcpResult(
            False, 0.0, f"probe failed: {result.output.strip()[-200:]}", status="error"
        )
        return [failed] * len(jobs)
    return [result_of(row) for row in data]


def probe_from_each(
    work: list[tuple[Endpoint, list[Job]]],
    done: Callable[[int], None] | None = None,
    nodes_at_once: int = 8,
) -> list[list[TcpResult]]:
    """Like `probe_many` for many sources, in one exec per node: the pods of a node
    (and the node itself) probe at once, each from its own namespace. Results in
    the order of `work`. Sources that are neither pods nor nodes run one by one.
    `done` is told how many jobs finished, as each exec ends."""
    from labkit.core.handles import NodeHandle, PodHandle  # they import this module

    by_node: dict[str, list[int]] = {}
    alone: list[int] = []
    for index, (source, _) in enumerate(work):
        if isinstance(source, PodHandle | NodeHandle):
            by_node.setdefault(source.node.name, []).append(index)
        else:
            alone.append(index)
    results: list[list[TcpResult]] = [[] for _ in work]

    def run_node(indices: list[int]) -> None:
        node = cast("NodeHandle | PodHandle", work[indices[0]][0]).node
        spec = {
            (work[i][0].name if isinstance(work[i][0], PodHandle) else ""): [
                [j.kind, j.address, j.port, j.timeout, j.payload] for j in work[i][1]
            ]
            for i in indices
        }
        timeout = max([j.timeout for i in indices for j in work[i][1]] + [1.0])
        ran = node.exec(
            f"python3 -c {q(_BATCH_PROBE)} {q(json.dumps(spec))}",
            check=False,
            timeout=2 * timeout + 15,
        )
        try:
            data = json.loads(ran.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            data = {}
        for i in indices:
            name = work[i][0].name if isinstance(work[i][0], PodHandle) else ""
            rows = data.get(name)
            if rows is None:
                failed = TcpResult(
                    False, 0.0, f"probe failed: {ran.output.strip()[-200:]}", status="error"
                )
                results[i] = [failed] * len(work[i][1])
            else:
                results[i] = [result_of(row) for row in rows]
        if done is not None:
            done(sum(len(work[i][1]) for i in indices))

    def run_alone(index: int) -> None:
        results[index] = probe_many(work[index][0], work[index][1])
        if done is not None:
            done(len(work[index][1]))

    parallel(run_node, list(by_node.values()), workers=nodes_at_once)
    parallel(run_alone, alone, workers=8)
    return results


def _socket_probe(
    source: Endpoint, kind: str, target: Target, port: int, timeout: float, payload: str
) -> TcpResult:
    return probe_many(source, [Job(kind, address_of(target), port, timeout, payload)])[0]


def tcp_connect(
    source: Endpoint, target: Target, port: int, *, timeout: float = 2.0, payload: str = ""
) -> TcpResult:
    """Open a TCP connection (and read the first reply when `payload` is sent)."""
    return _socket_probe(source, "tcp", target, port, timeout, payload)


def udp_request(
    source: Endpoint, target: Target, port: int, *, timeout: float = 2.0, payload: str = "ping"
) -> TcpResult:
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
    words = [
        "iperf3",
        "-J",
        "-c",
        address_of(target or server),
        "-p",
        str(port),
        "-t",
        str(seconds),
    ]
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
