#!/usr/bin/env python3
"""echo-server: answers who it is and who called it (the role of agnhost netexec).

Runs inside a pod (a network namespace of a node container); stdlib only.

HTTP (any method, any path):
  /hostname  -> the pod name, text/plain      (agnhost compatible)
  /clientip  -> "ip:port" of the caller, text/plain (agnhost compatible)
  /healthz   -> "ok"
  otherwise  -> 200 JSON {pod, namespace, node, pod_ip, client, client_ip, path, host, method}
TCP: sends "<pod> <client_ip>:<client_port>\\n" on connect, then echoes until EOF.
UDP: answers every datagram with "<pod> <client_ip>:<client_port>\\n".

Identity comes from POD_NAME (default: hostname), POD_NAMESPACE, NODE_NAME, POD_IP.
A port of 0 disables that listener. SIGTERM/SIGINT exit cleanly with status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import cast
from urllib.parse import urlsplit

POD = os.environ.get("POD_NAME") or socket.gethostname()
NAMESPACE = os.environ.get("POD_NAMESPACE")
NODE = os.environ.get("NODE_NAME")
POD_IP = os.environ.get("POD_IP")
MAX_BODY = 16 * 1024 * 1024  # a request body above this closes the connection
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
# Open connections, so that SIGTERM can close them: cancelling their tasks
# instead makes 3.11's asyncio log a traceback per connection.
OPEN: dict[asyncio.StreamWriter, asyncio.Task[None]] = {}


def log(message: str) -> None:
    print(f"echo-server[{POD}]: {message}", flush=True)


def peer(writer: asyncio.StreamWriter) -> tuple[str, int]:
    host, port = writer.get_extra_info("peername")[:2]
    return host, port


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> None:
    """Consume (and drop) the request body so the next keep-alive request parses."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:  # last chunk, then optional trailers up to an empty line
                while (await reader.readline()).strip():
                    pass
                return
            await reader.readexactly(size + 2)  # chunk data + CRLF
    length = int(headers.get("content-length", "0") or "0")
    if not 0 <= length <= MAX_BODY:
        raise ValueError("bad content-length")
    if length:
        await reader.readexactly(length)


def http_response(
    method: str, target: str, headers: dict[str, str], client: tuple[str, int], local_ip: str
) -> tuple[bytes, str]:
    """Decide the answer to one request: (body, content type)."""
    client_ip, client_port = client
    route = urlsplit(target).path
    if route == "/hostname":
        return POD.encode(), "text/plain"
    if route == "/clientip":
        return f"{client_ip}:{client_port}".encode(), "text/plain"
    if route == "/healthz":
        return b"ok", "text/plain"
    info = {
        "pod": POD,
        "namespace": NAMESPACE,
        "node": NODE,
        # Without POD_IP, the address the request arrived on is the pod's own
        # address (after any DNAT), which is what a caller wants to know.
        "pod_ip": POD_IP or local_ip,
        "client": f"{client_ip}:{client_port}",
        "client_ip": client_ip,
        "path": target,
        "host": headers.get("host"),
        "method": method,
    }
    return (json.dumps(info) + "\n").encode(), "application/json"


async def serve_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    client = peer(writer)
    local_ip = writer.get_extra_info("sockname")[0]
    try:
        while True:
            request_line = await reader.readline()
            if not request_line.strip():
                break  # EOF (or a stray empty line: treat as the end)
            method, target, version = request_line.decode("latin-1").split(maxsplit=2)
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            await read_body(reader, headers)
            body, content_type = http_response(method, target, headers, client, local_ip)
            connection = headers.get("connection", "").lower()
            keep_alive = (
                (connection != "close")
                if version.strip() == "HTTP/1.1"
                else (connection == "keep-alive")
            )
            head = (
                f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n"
                f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
            )
            writer.write(head.encode() + (b"" if method == "HEAD" else body))
            await writer.drain()
            if not keep_alive:
                break
    except (ValueError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass  # malformed request or peer gone: just drop the connection
    finally:
        writer.close()


async def serve_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    client_ip, client_port = peer(writer)
    try:
        writer.write(f"{POD} {client_ip}:{client_port}\n".encode())
        await writer.drain()
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def tracked(handler: Handler) -> Handler:
    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        OPEN[writer] = cast("asyncio.Task[None]", asyncio.current_task())
        try:
            await handler(reader, writer)
        finally:
            OPEN.pop(writer, None)

    return run


class UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: 3.11's selector transport does not subclass DatagramTransport
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(f"{POD} {addr[0]}:{addr[1]}\n".encode(), addr)


async def main(http_port: int, tcp_port: int, udp_port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    servers: list[asyncio.Server] = []
    transports: list[asyncio.BaseTransport] = []
    if http_port:
        servers.append(
            await asyncio.start_server(tracked(serve_http), "0.0.0.0", http_port, backlog=4096)
        )
    if tcp_port:
        servers.append(
            await asyncio.start_server(tracked(serve_tcp), "0.0.0.0", tcp_port, backlog=4096)
        )
    if udp_port:
        udp, _ = await loop.create_datagram_endpoint(UdpEcho, local_addr=("0.0.0.0", udp_port))
        transports.append(udp)
    log(
        f"listening on 0.0.0.0 http={http_port or 'off'} tcp={tcp_port or 'off'}"
        f" udp={udp_port or 'off'}"
        f" namespace={NAMESPACE} node={NODE} pod_ip={POD_IP}"
    )
    if not servers and not transports:
        return
    await stop.wait()
    log("stopping")
    for server in servers:
        server.close()
    for transport in transports:
        transport.close()
    tasks = list(OPEN.values())
    for writer in list(OPEN):
        writer.transport.abort()  # the handler sees EOF or a reset and returns
    if tasks:
        await asyncio.wait(tasks, timeout=2)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--http-port", type=int, default=8080, help="0 disables (default 8080)")
    parser.add_argument("--tcp-port", type=int, default=9000, help="0 disables (default 9000)")
    parser.add_argument("--udp-port", type=int, default=9000, help="0 disables (default 9000)")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.http_port, args.tcp_port, args.udp_port))
    except OSError as error:  # e.g. port already in use
        log(f"error: {error}")
        sys.exit(1)
