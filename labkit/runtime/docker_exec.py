"""Starting a `docker exec`, or attaching to a container, and reading its output
frames, none lost.

`exec start` is an HTTP upgrade: the engine answers `101 UPGRADED` and then
writes the output frames on the same connection. http.client reads the headers
through a buffered reader, so frames that arrive in the same `recv` as the
headers land in that buffer; docker-py then reads the raw socket past it, and
those frames are gone (docker/docker-py#3332, #2042). It happens whenever the
reading thread is a moment late (another thread holds the GIL, a busy host):
labkit lost the head of a readiness script's output that way. Here the frames
are read through the buffered reader.
"""

from __future__ import annotations

import contextlib
import io
import struct
from collections.abc import Generator, Iterator
from typing import Any

from docker.utils.socket import frames_iter

STDOUT, STDERR = 1, 2
_HEADER = struct.Struct(">BxxxL")  # stream type, 3 bytes padding, payload length


UPGRADE = {"Connection": "Upgrade", "Upgrade": "tcp"}


def exec_frames(api: Any, exec_id: str) -> Generator[tuple[int, bytes], None, None]:
    """Start the exec attached and yield its (stream type, bytes) frames until it ends."""
    response = api._post_json(
        api._url("/exec/{0}/start", exec_id),
        headers=UPGRADE,
        data={"Tty": False, "Detach": False},
        stream=True,
    )
    try:
        yield from _response_frames(api, response)
    finally:
        response.close()


@contextlib.contextmanager
def attached(api: Any, container: str) -> Iterator[Iterator[tuple[int, bytes]]]:
    """Attached to the container's stdout and stderr from now on (before its start:
    none of its output missed): its (stream type, bytes) frames, until left."""
    response = api._post(
        api._url("/containers/{0}/attach", container),
        headers=UPGRADE,
        params={"stdout": 1, "stderr": 1, "stream": 1},
        stream=True,
    )
    try:
        yield _response_frames(api, response)
    finally:
        response.close()


def _response_frames(api: Any, response: Any) -> Iterator[tuple[int, bytes]]:
    sock = api._get_raw_response_socket(response)  # raises for an error status
    api._disable_socket_timeout(sock)  # a long command is not a dead engine
    reader = getattr(getattr(response.raw, "_fp", None), "fp", None)
    if isinstance(reader, io.BufferedReader):
        return _frames(reader)
    # A transport without http.client's reader (ssh): docker-py's own loop.
    return frames_iter(sock, False)  # type: ignore[no-any-return]


def _frames(reader: io.BufferedReader) -> Generator[tuple[int, bytes], None, None]:
    while len(header := reader.read(_HEADER.size)) == _HEADER.size:
        stream, length = _HEADER.unpack(header)
        if length:
            yield stream, reader.read(length)


def exec_output(api: Any, exec_id: str) -> tuple[bytes, bytes]:
    """Start the exec and wait for it: its whole stdout and stderr."""
    out, err = bytearray(), bytearray()
    for stream, data in exec_frames(api, exec_id):
        (err if stream == STDERR else out).extend(data)
    return bytes(out), bytes(err)
