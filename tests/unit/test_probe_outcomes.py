"""Probe outcomes: what the batch program reports, and how a result is classified.

The program runs here for real, against sockets on this machine's loopback:
a closed TCP port (RST), a closed UDP port (ICMP port unreachable) and a
listener. A policy denial needs a REJECT, so it is covered by the mapping
table here and end to end in tests/lab/test_policy.py.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import threading

import pytest

from labkit import expect
from labkit.core import probes
from labkit.core.probes import TcpResult, classify
from labkit.runtime.base import ExecResult


class LocalEndpoint:
    """A probe source that runs commands on this machine."""

    name = "local"

    def exec(self, command: str, *, check: bool = True, timeout: float | None = None) -> ExecResult:
        done = subprocess.run(
            ["sh", "-c", command], capture_output=True, text=True, timeout=timeout
        )
        return ExecResult(done.returncode, done.stdout, done.stderr)


@pytest.mark.parametrize(
    ("ok", "error", "icmp", "outcome"),
    [
        (True, "", None, "ok"),
        (False, "OSError EHOSTUNREACH: [Errno 113] No route to host", (3, 13), "denied"),
        (False, "OSError EHOSTUNREACH: [Errno 113] No route to host", (3, 10), "denied"),
        (False, "OSError ENETUNREACH: [Errno 101] Network is unreachable", (3, 9), "denied"),
        (False, "ConnectionRefusedError ECONNREFUSED: [Errno 111]", (3, 3), "refused"),
        (
            False,
            "ConnectionRefusedError ECONNREFUSED: [Errno 111] Connection refused",
            None,
            "refused",
        ),
        (False, "PermissionError EPERM: [Errno 1] Operation not permitted", None, "denied"),
        (False, "PermissionError EACCES: [Errno 13] Permission denied", None, "denied"),
        (False, "TimeoutError: timed out", None, "timeout"),
        (False, "OSError EHOSTUNREACH: [Errno 113] No route to host", (3, 1), "unreachable"),
        # Without the ICMP code, EHOSTUNREACH may be a dead host as well as a REJECT.
        (False, "OSError EHOSTUNREACH: [Errno 113] No route to host", None, "unreachable"),
        (False, "probe failed: sh: python3: not found", None, "error"),
    ],
)
def test_classification(ok, error, icmp, outcome):
    assert classify(ok, error, icmp) == outcome


def test_a_result_built_from_the_old_fields_still_classifies_itself():
    refused = TcpResult(False, 0.3, "ConnectionRefusedError: [Errno 111] Connection refused")
    assert refused.status == "refused" and refused.refused and not refused.denied
    denied = TcpResult(False, 0.2, "OSError: [Errno 113] No route to host", icmp=(3, 13))
    assert denied.status == "denied" and denied.denied and not denied.refused
    assert "denied" in str(denied)


@pytest.fixture
def listener():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        connection, _ = server.accept()
        connection.sendall(b"local-pod hello\n")
        connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    server.close()


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_batch_program_tells_refused_from_answered(listener):
    closed_tcp, closed_udp = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    jobs = [
        probes.Job("tcp", "127.0.0.1", listener, 1.0, "hi"),
        probes.Job("tcp", "127.0.0.1", closed_tcp, 1.0),
        probes.Job("udp", "127.0.0.1", closed_udp, 1.0, "ping"),
    ]
    answered, tcp_closed, udp_closed = probes.probe_many(LocalEndpoint(), jobs)  # type: ignore[arg-type]
    assert answered.status == "ok" and answered.served_by == "local-pod", answered
    assert tcp_closed.status == "refused", tcp_closed
    assert udp_closed.status == "refused" and udp_closed.icmp == (3, 3), udp_closed
    assert udp_closed.rejected_by == "127.0.0.1"


def test_a_broken_source_gives_an_error_per_job():
    class Broken(LocalEndpoint):
        def exec(
            self, command: str, *, check: bool = True, timeout: float | None = None
        ) -> ExecResult:
            return ExecResult(127, "", "python3: not found")

    results = probes.probe_many(Broken(), [probes.Job("tcp", "10.0.0.1", 80)] * 2)  # type: ignore[arg-type]
    assert [r.status for r in results] == ["error", "error"]


class Recorder(LocalEndpoint):
    """A source that keeps the command and answers one echo job."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def exec(self, command: str, *, check: bool = True, timeout: float | None = None) -> ExecResult:
        self.commands.append(command)
        row = {"ok": True, "ms": 0.1, "error": "", "reply": "", "local": "", "sent": 3}
        return ExecResult(0, json.dumps([row | {"received": 3}]), "")


def test_icmp_sends_the_count_it_is_given_to_the_batch_program():
    source = Recorder()
    result = expect.icmp(count=3)(source, "10.244.1.2")  # type: ignore[arg-type]
    [command] = source.commands
    rows = json.loads(shlex.split(command)[-1])
    assert rows == [["icmp", "10.244.1.2", 0, 1.0, "", 3]]
    assert (result.sent, result.received) == (3, 3)


class PrivateLoopback(LocalEndpoint):
    """Commands in a network namespace of their own with only loopback: nothing leaves."""

    def exec(self, command: str, *, check: bool = True, timeout: float | None = None) -> ExecResult:
        return super().exec(
            f"unshare -n sh -c {shlex.quote('ip link set lo up && ' + command)}", timeout=timeout
        )


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="a network namespace needs root"
)
def test_the_batch_program_sends_count_echoes_and_counts_the_answers():
    answered, unrouted = probes.probe_many(
        PrivateLoopback(),  # type: ignore[arg-type]
        [
            probes.Job("icmp", "127.0.0.1", timeout=1.0, count=3),
            probes.Job("icmp", "10.9.9.9", timeout=0.5),
        ],
    )
    assert answered.ok and (answered.sent, answered.received) == (3, 3), answered
    assert not unrouted.ok and (unrouted.sent, unrouted.received) == (0, 0), unrouted


# iputils ping's own output (Debian 12), one case per outcome.
PING_OK = """PING 10.244.0.2 (10.244.0.2) 56(84) bytes of data.
64 bytes from 10.244.0.2: icmp_seq=1 ttl=64 time=0.061 ms

--- 10.244.0.2 ping statistics ---
1 packets transmitted, 1 received, 0% packet loss, time 0ms
rtt min/avg/max/mdev = 0.061/0.061/0.061/0.000 ms
"""
PING_UNREACHABLE = """PING 10.244.0.200 (10.244.0.200) 56(84) bytes of data.
From 10.244.0.0 icmp_seq=1 Destination Host Unreachable

--- 10.244.0.200 ping statistics ---
1 packets transmitted, 0 received, +1 errors, 100% packet loss, time 0ms
"""
PING_FILTERED = PING_UNREACHABLE.replace("Destination Host Unreachable", "Packet filtered")
PING_SILENT = """PING 10.244.9.9 (10.244.9.9) 56(84) bytes of data.

--- 10.244.9.9 ping statistics ---
2 packets transmitted, 0 received, 100% packet loss, time 1001ms
"""


@pytest.mark.parametrize(
    ("output", "status", "received"),
    [(PING_OK, "ok", 1), (PING_UNREACHABLE, "unreachable", 0), (PING_FILTERED, "denied", 0),
     (PING_SILENT, "timeout", 0)],
)  # fmt: skip
def test_ping_outcome_from_its_output(output, status, received):
    result = probes.parse_ping(output)
    assert (result.status, result.received) == (status, received), result


def test_ping_prints_each_packet_so_an_icmp_error_is_seen():
    sent = []

    class Recorder(LocalEndpoint):
        def exec(self, command, *, check=True, timeout=None):
            sent.append(command)
            return ExecResult(1, PING_UNREACHABLE, "")

    assert probes.ping(Recorder(), "10.244.0.200", count=1).status == "unreachable"
    assert " -q" not in sent[0]
