"""Starting a `docker exec` and reading its output frames, none lost.

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

import io
import struct
from collections.abc import Generator
from typing import Any

from docker.utils.socket import frames_iter

STDOUT, STDERR = 1, 2
_HEADER = struct.Struct(">BxxxL")  # stream type, 3 bytes padding, payload length


def exec_frames(api: Any, exec_id: str) -> Generator[tuple[int, bytes], None, None]:
    """Start the exec attached and yield its (stream type, bytes) frames until it ends."""
    response = api._post_json(
        api._url("/exec/{0}/start", exec_id),
        headers={"Connection": "Upgrade", "Upgrade": "tcp"},
        data={"Tty": False, "Detach": False},
        stream=True,
    )
    try:
        sock = api._get_raw_response_socket(response)  # raises for an error status
        api._disable_socket_timeout(sock)  # a long command is not a dead engine
        reader = getattr(getattr(response.raw, "_fp", None), "fp", None)
        if isinstance(reader, io.BufferedReader):
            yield from _frames(reader)
        else:  # a transport without http.client's reader (ssh): docker-py's own loop
            yield from frames_iter(sock, False)
    finally:
        response.close()


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
