"""The many-exchanges latency client: its script runs here against local sockets."""

from __future__ import annotations

import socket
import subprocess
import threading

import pytest

from labkit.bench.latency import percentile, summary
from labkit.dataplane.latency_probe import parse_samples, probe_command


def _run(command: str) -> list[float | None]:
    return parse_samples(
        subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout
    )


def test_tcp_connect_samples_against_a_listening_socket():
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.listen(64)
        port = server.getsockname()[1]
        samples = _run(probe_command("tcp-connect", "127.0.0.1", port, 20))
    assert len(samples) == 20 and all(s is not None for s in samples)


def test_a_dns_answer_must_carry_the_query_id_and_an_answer():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    def answer() -> None:  # echo the query back with ANCOUNT 1: a (minimal) answer
        for _ in range(3):
            data, peer = sock.recvfrom(512)
            sock.sendto(data[:6] + b"\x00\x01" + data[8:], peer)

    threading.Thread(target=answer, daemon=True).start()
    samples = _run(
        probe_command(
            "dns", "127.0.0.1", sock.getsockname()[1], 3, name="web.default.svc.cluster.local"
        )
    )
    sock.close()
    assert all(s is not None for s in samples)


def test_failures_count_and_percentiles():
    assert summary([1.0, 2.0, None, 3.0]) == {"count": 4, "failed": 1, "p50_ms": 2.0, "p99_ms": 3.0}
    assert summary([None])["p50_ms"] is None
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0
    with pytest.raises(ValueError):
        probe_command("icmp", "127.0.0.1", 1, 1)
