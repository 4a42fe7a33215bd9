#!/usr/bin/python3 -IS
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

One thread, one epoll loop (`selectors`), each connection a generator fed the
bytes as they come: asyncio would cost 50 ms of CPU at every start, and a lab
starts one of these in every pod that runs it.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import sys
from collections.abc import Callable, Generator

POD = os.environ.get("POD_NAME") or socket.gethostname()
NAMESPACE = os.environ.get("POD_NAMESPACE")
NODE = os.environ.get("NODE_NAME")
POD_IP = os.environ.get("POD_IP")
MAX_BODY = 16 * 1024 * 1024  # a request body above this closes the connection
LINE_LIMIT = 64 * 1024  # a request or header line longer than this closes it (asyncio's limit)
HIGH_WATER = 64 * 1024  # unsent bytes above this: stop reading that peer until they go
BACKLOG = 4096

Wait = Generator[None, None, bytes]  # a read: yields until its bytes are there


class Malformed(ValueError):
    """A request that cannot be parsed: the connection is dropped."""


def log(message: str) -> None:
    print(f"echo-server[{POD}]: {message}", flush=True)


class Connection:
    """One accepted socket: bytes in, bytes out, and the handler reading them."""

    def __init__(self, loop: Loop, sock: socket.socket, handler: Handler) -> None:
        self.loop, self.sock = loop, sock
        self.inbox, self.outbox = bytearray(), bytearray()
        self.eof = self.done = False
        self.peer: tuple[str, int] = sock.getpeername()[:2]
        self.local_ip: str = sock.getsockname()[0]
        self.handler = handler(self)
        self.resume()

    # -- what handlers call --------------------------------------------------

    def readline(self) -> Wait:
        """Up to and with the next b"\\n"; what is left at EOF; b"" after it."""
        while (end := self.inbox.find(b"\n")) < 0:
            if self.eof:
                return self.take(len(self.inbox))
            if len(self.inbox) > LINE_LIMIT:
                raise Malformed("line too long")
            yield
        return self.take(end + 1)

    def readexactly(self, size: int) -> Wait:
        while len(self.inbox) < size:
            if self.eof:
                raise Malformed("closed mid-body")
            yield
        return self.take(size)

    def read(self) -> Wait:
        """Whatever has arrived (at least a byte); b"" at EOF."""
        while not self.inbox and not self.eof:
            yield
        return self.take(len(self.inbox))

    def write(self, data: bytes) -> None:
        if not self.outbox:
            with contextlib.suppress(BlockingIOError):  # full: all of it waits
                data = data[self.sock.send(data) :]
        self.outbox += data

    # -- what the loop calls ---------------------------------------------------

    def take(self, size: int) -> bytes:
        data = bytes(self.inbox[:size])
        del self.inbox[:size]
        return data

    def resume(self) -> None:
        """Run the handler until it waits for bytes (or ends), then watch what it needs."""
        try:
            if not self.done:
                next(self.handler)
        except StopIteration:
            self.done = True
        except ValueError:  # malformed: no answer to it (those before it still go out)
            self.done = True
        self.watch()

    def on_event(self, readable: bool, writable: bool) -> None:
        try:
            if writable and self.outbox:
                del self.outbox[: self.sock.send(self.outbox)]
            if readable:
                data = self.sock.recv(65536)
                self.inbox += data
                self.eof = not data
                self.resume()
                return
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:  # reset by the peer, or gone
            self.close()
            return
        self.watch()

    def watch(self) -> None:
        if self.done and not self.outbox:
            self.close()
            return
        events = (
            0 if self.eof or self.done or len(self.outbox) > HIGH_WATER else selectors.EVENT_READ
        )
        if self.outbox:
            events |= selectors.EVENT_WRITE
        self.loop.watch(self.sock, events, self)

    def close(self) -> None:
        self.loop.watch(self.sock, 0, self)
        self.sock.close()
        self.handler.close()


Handler = Callable[[Connection], Generator[None, None, None]]


def read_body(conn: Connection, headers: dict[str, str]) -> Generator[None, None, None]:
    """Consume (and drop) the request body so the next keep-alive request parses."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int((yield from conn.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:  # last chunk, then optional trailers up to an empty line
                while (yield from conn.readline()).strip():
                    pass
                return
            yield from conn.readexactly(size + 2)  # chunk data + CRLF
    length = int(headers.get("content-length", "0") or "0")
    if not 0 <= length <= MAX_BODY:
        raise Malformed("bad content-length")
    if length:
        yield from conn.readexactly(length)


def http_response(
    method: str, target: str, headers: dict[str, str], client: tuple[str, int], local_ip: str
) -> tuple[bytes, str]:
    """Decide the answer to one request: (body, content type)."""
    from urllib.parse import urlsplit  # here, not at start: a lab starts many of these

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
    import json  # as urlsplit: at the first request, not at start

    return (json.dumps(info) + "\n").encode(), "application/json"


def serve_http(conn: Connection) -> Generator[None, None, None]:
    while True:
        request_line = yield from conn.readline()
        if not request_line.strip():
            return  # EOF (or a stray empty line: treat as the end)
        method, target, version = request_line.decode("latin-1").split(maxsplit=2)
        headers: dict[str, str] = {}
        while (line := (yield from conn.readline())) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        yield from read_body(conn, headers)
        body, content_type = http_response(method, target, headers, conn.peer, conn.local_ip)
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
        conn.write(head.encode() + (b"" if method == "HEAD" else body))
        if not keep_alive:
            return


def serve_tcp(conn: Connection) -> Generator[None, None, None]:
    client_ip, client_port = conn.peer
    conn.write(f"{POD} {client_ip}:{client_port}\n".encode())
    while data := (yield from conn.read()):
        conn.write(data)


class Loop:
    """The listeners, the connections, and the signals that end it all."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.wake_r, wake_w = socket.socketpair()
        for end in (self.wake_r, wake_w):
            end.setblocking(False)
        self.wake_w = wake_w
        signal.set_wakeup_fd(wake_w.fileno())
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)  # the byte on wake_r is what stops the loop
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)

    def watch(self, sock: socket.socket, events: int, target: object) -> None:
        """Watch `sock` for `events` (none: stop watching it)."""
        if sock.fileno() < 0:
            return  # closed, so already unwatched: a socket is unwatched before it closes
        key = self.selector.get_map().get(sock)
        if key is None:
            if events:
                self.selector.register(sock, events, target)
        elif not events:
            self.selector.unregister(sock)
        elif events != key.events:
            self.selector.modify(sock, events, target)

    def listen_tcp(self, port: int, handler: Handler) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
        self.watch(sock, selectors.EVENT_READ, ("accept", handler))

    def listen_udp(self, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", port))
        sock.setblocking(False)
        self.watch(sock, selectors.EVENT_READ, ("udp", None))

    def accept(self, listener: socket.socket, handler: Handler) -> None:
        for _ in range(64):  # a burst at a time, then the others get their turn
            try:
                sock, _addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. the peer reset before accept: nothing to serve
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio does
            try:
                Connection(self, sock, handler)
            except OSError:  # gone before its first byte
                sock.close()

    @staticmethod
    def answer_udp(sock: socket.socket) -> None:
        for _ in range(64):
            try:
                _data, addr = sock.recvfrom(65536)
                sock.sendto(f"{POD} {addr[0]}:{addr[1]}\n".encode(), addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. an ICMP error queued for an earlier answer
                continue

    def run(self) -> None:
        """Until SIGTERM or SIGINT; then every connection is dropped."""
        while True:
            for key, events in self.selector.select():
                target, sock = key.data, key.fileobj
                assert isinstance(sock, socket.socket)
                if target is None:
                    return self.stop()
                if isinstance(target, Connection):
                    target.on_event(
                        bool(events & selectors.EVENT_READ), bool(events & selectors.EVENT_WRITE)
                    )
                elif target[0] == "accept":
                    self.accept(sock, target[1])
                else:
                    self.answer_udp(sock)

    def stop(self) -> None:
        log("stopping")
        for key in list(self.selector.get_map().values()):
            if key.data is not None:  # not the signals' wake-up socket
                self.selector.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]


def main(http_port: int, tcp_port: int, udp_port: int) -> None:
    loop = Loop()
    if http_port:
        loop.listen_tcp(http_port, serve_http)
    if tcp_port:
        loop.listen_tcp(tcp_port, serve_tcp)
    if udp_port:
        loop.listen_udp(udp_port)
    log(
        f"listening on 0.0.0.0 http={http_port or 'off'} tcp={tcp_port or 'off'}"
        f" udp={udp_port or 'off'}"
        f" namespace={NAMESPACE} node={NODE} pod_ip={POD_IP}"
    )
    if any((http_port, tcp_port, udp_port)):
        loop.run()


def ports(argv: list[str]) -> tuple[int, int, int]:
    """(http, tcp, udp) from the options; what pods run, no option, skips argparse
    (with site, skipped by the shebang: a start is 10 ms of CPU instead of 24)."""
    if not argv:
        return 8080, 9000, 9000
    import argparse

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--http-port", type=int, default=8080, help="0 disables (default 8080)")
    parser.add_argument("--tcp-port", type=int, default=9000, help="0 disables (default 9000)")
    parser.add_argument("--udp-port", type=int, default=9000, help="0 disables (default 9000)")
    args = parser.parse_args(argv)
    return args.http_port, args.tcp_port, args.udp_port


if __name__ == "__main__":
    try:
        main(*ports(sys.argv[1:]))
    except OSError as error:  # e.g. port already in use
        log(f"error: {error}")
        sys.exit(1)
