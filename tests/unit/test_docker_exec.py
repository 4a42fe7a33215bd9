"""Reading an exec's output frames: none lost when they come with the 101 headers.

A stand-in engine on a Unix socket answers `exec start` with the upgrade
headers and every frame in one write, the moment that made docker-py's own
reader drop the head of an output (docker/docker-py#3332) whenever the reading
thread was a little late. The real engine is driven by the lab tests.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from labkit.runtime.docker_exec import STDERR, STDOUT, exec_frames, exec_output

FRAMES = [(STDOUT, b"== pod-a netns\n"), (STDERR, b"a warning\n"), (STDOUT, b"web up\n")]
UPGRADED = (
    b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\n"
    b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
)


def _frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[str]:
    """A Unix socket that answers every request with the headers and all frames at once."""
    path = str(tmp_path / "engine.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(65536)
                head, _, body = request.partition(b"\r\n\r\n")
                length = next(
                    (int(line.split(b":")[1]) for line in head.split(b"\r\n")
                     if line.lower().startswith(b"content-length:")),
                    0,
                )  # fmt: skip
                while len(body) < length:
                    body += conn.recv(65536)
                conn.sendall(UPGRADED + b"".join(_frame(*f) for f in FRAMES))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"unix://{path}"
    server.close()


def test_frames_sent_with_the_headers_are_all_read(engine):
    api = docker.APIClient(base_url=engine, version="1.41")
    assert list(exec_frames(api, "x")) == FRAMES


def test_stdout_and_stderr_are_kept_apart(engine):
    api = docker.APIClient(base_url=engine, version="1.41")
    assert exec_output(api, "x") == (b"== pod-a netns\nweb up\n", b"a warning\n")
