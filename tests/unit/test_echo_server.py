"""The pods' echo-server, run for real in a network namespace of its own (only `lo`).

Every byte stays inside that namespace: the server listens on 0.0.0.0 there,
and the checks talk to 127.0.0.1 there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SERVER = Path(__file__).parents[2] / "images" / "node" / "echo-server.py"

# Runs inside the namespace; prints one JSON object of what it saw.
CHECKS = r"""
import json, os, signal, socket, subprocess, sys, time

server = sys.argv[1]
env = {**os.environ, "POD_NAME": "web-1", "POD_NAMESPACE": "shop", "NODE_NAME": "node-1"}
proc = subprocess.Popen([sys.executable, server], env=env, stdout=subprocess.PIPE, text=True)
first_line = proc.stdout.readline()
seen = {"listening": first_line}

def connect(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock

def read_all(sock):
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)

def responses(sock, methods):
    # One HTTP response (Content-Length framed; none after a HEAD) per method.
    data, found = b"", []
    for method in methods:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return found
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
        length = 0 if method == "HEAD" else int(headers["Content-Length"])
        while len(data) < length:
            data += sock.recv(65536)
        found.append({"headers": headers, "body": data[:length].decode()})
        data = data[length:]
    return found

sock = connect(8080)
sock.sendall(b"GET /hostname HTTP/1.1\r\nHost: x\r\n\r\n")
sock.sendall(b"GET /a?b=1 HTTP/1.1\r\nHost: web\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n")
sock.sendall(b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
sock.sendall(b"POST /d HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
sock.sendall(b"HEAD /e HTTP/1.1\r\n\r\n")
seen["keep_alive"] = responses(sock, ["GET"] * 3 + ["POST"] * 2 + ["HEAD"])
sock.close()

sock = connect(8080)
sock.sendall(b"GET /clientip HTTP/1.0\r\n\r\n")
seen["http10"] = read_all(sock).decode()
seen["http10_client_port"] = sock.getsockname()[1]
sock.close()

sock = connect(8080)
sock.sendall(b"GET /x HTTP/1.1\r\nContent-Length: -4\r\n\r\n")
seen["malformed"] = read_all(sock).decode()
sock.close()

sock = connect(9000)
payload = os.urandom(4 * 1024 * 1024)
greeting = b""
while not greeting.endswith(b"\n"):
    greeting += sock.recv(1)
seen["greeting"] = greeting.decode()
seen["tcp_port"] = sock.getsockname()[1]
sender = __import__("threading").Thread(
    target=lambda: (sock.sendall(payload), sock.shutdown(socket.SHUT_WR))
)
sender.start()
echoed = read_all(sock)
sender.join()
seen["echo_exact"] = echoed == payload
sock.close()

udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.settimeout(5)
udp.sendto(b"ping", ("127.0.0.1", 9000))
seen["udp"] = udp.recv(100).decode()
seen["udp_port"] = udp.getsockname()[1]

taken = subprocess.run(
    [sys.executable, server, "--tcp-port", "0", "--udp-port", "0"],
    capture_output=True, text=True, timeout=10,
)
seen["in_use"] = [taken.returncode, taken.stdout]
idle = subprocess.run(
    [sys.executable, server, "--http-port", "0", "--tcp-port", "0", "--udp-port", "0"],
    capture_output=True, text=True, timeout=10,
)
seen["all_off"] = idle.returncode

held = connect(8080)  # open, idle: SIGTERM must not wait for it
held.sendall(b"GET /hostname HTTP/1.1\r\n\r\n")
held.recv(1000)
started = time.monotonic()
proc.send_signal(signal.SIGTERM)
seen["exit"] = proc.wait(timeout=10)
seen["exit_s"] = time.monotonic() - started
seen["stopping"] = proc.stdout.read()
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def seen() -> dict:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1): the server runs in a network namespace of its own")
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "-",
         sys.executable, "-c", CHECKS, str(SERVER)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_it_says_where_it_listens(seen):
    assert seen["listening"].startswith("echo-server[web-1]: listening on 0.0.0.0 http=8080")
    assert "namespace=shop node=node-1" in seen["listening"]


def test_keep_alive_pipelining_bodies_and_head(seen):
    hostname, info, healthz, chunked, sized, head = seen["keep_alive"]
    assert hostname["body"] == "web-1"
    assert hostname["headers"]["Connection"] == "keep-alive"
    body = json.loads(info["body"])
    assert body["pod"] == "web-1" and body["path"] == "/a?b=1" and body["host"] == "web"
    assert body["method"] == "GET" and body["client_ip"] == "127.0.0.1"
    assert body["namespace"] == "shop" and body["node"] == "node-1"
    assert body["pod_ip"] == "127.0.0.1"  # no POD_IP: the address it was reached on
    assert healthz["body"] == "ok"
    assert json.loads(chunked["body"])["path"] == "/c"  # the chunked body was consumed
    assert json.loads(sized["body"])["path"] == "/d"
    assert head["body"] == "" and int(head["headers"]["Content-Length"]) > 0


def test_http10_closes_after_one_answer(seen):
    assert "Connection: close" in seen["http10"]
    assert seen["http10"].endswith(f"\r\n\r\n127.0.0.1:{seen['http10_client_port']}")


def test_a_malformed_request_is_dropped_unanswered(seen):
    assert seen["malformed"] == ""


def test_tcp_greets_then_echoes_every_byte(seen):
    assert seen["greeting"] == f"web-1 127.0.0.1:{seen['tcp_port']}\n"
    assert seen["echo_exact"]


def test_udp_answers_who_called(seen):
    assert seen["udp"] == f"web-1 127.0.0.1:{seen['udp_port']}\n"


def test_a_port_in_use_exits_1_with_the_reason(seen):
    code, output = seen["in_use"]
    assert code == 1 and "error:" in output and "in use" in output


def test_every_listener_off_exits_at_once(seen):
    assert seen["all_off"] == 0


def test_sigterm_exits_0_without_waiting_for_open_connections(seen):
    assert seen["exit"] == 0 and seen["exit_s"] < 2
    assert "stopping" in seen["stopping"]
