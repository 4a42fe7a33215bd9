"""A node's first boot runs its build script as the container's own command.

At up every node's script used to be a `docker exec` once the container ran; an
exec costs the engine 70-100 ms of CPU here (dockerd, containerd, the shim, runc
exec), three of them on a 2-core host while the other nodes still start
(issue 14). Run by the container's command instead, before the image's own
command: the output is read through an attach made before the start. A marker
line on each stream, once the script ended, gives its exit status: a stream's
frames come in order, so every byte of it came before its marker.

Only the first boot runs it: a file in the container holds a token of that
container (its command's own argument), so a node started again is rebuilt by an
exec, as before, and an image committed from a node still runs its script.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Sequence

from labkit.runtime.base import ExecResult
from labkit.runtime.docker_exec import STDERR, STDOUT

DONE = "/var/lib/labkit/first-boot-done"
MARK = "labkit-first-boot-exit"
# $1: this container's token, $2: the script; then the image's own command (or,
# with none, sleep: a node stays up).
_BOOT = (
    f"booted=; [ ! -e {DONE} ] || read -r booted < {DONE}; "
    f'if [ "$booted" != "$1" ]; then mkdir -p {DONE.rsplit("/", 1)[0]} && echo "$1" > {DONE}; '
    'sh -c "$2" < /dev/null; rc=$?; '
    f"printf '\\n{MARK} %d\\n' $rc; printf '\\n{MARK} %d\\n' $rc >&2; fi; "
    'shift 2; [ $# -gt 0 ] || set -- sleep infinity; exec "$@"'
)
_END = re.compile(rf"\n{MARK} (-?\d+)\n".encode())


def entrypoint(script: str) -> list[str]:
    """The container's entrypoint: the script at the first boot, then its `command`."""
    return ["sh", "-c", _BOOT, "labkit-first-boot", secrets.token_hex(8), script]


def command(image_entrypoint: Sequence[str] | None, image_cmd: Sequence[str] | None) -> list[str]:
    """What the image would have run (its entrypoint, then its command)."""
    return [*(image_entrypoint or ()), *(image_cmd or ())]


def result(frames: Iterable[tuple[int, bytes]]) -> ExecResult:
    """The script's output and exit status, read until both streams' markers (or
    their end: the container stopped first, exit status -1)."""
    streams = {STDOUT: bytearray(), STDERR: bytearray()}
    ended: dict[int, int] = {}
    for stream, data in frames:
        if stream not in streams or stream in ended:
            continue
        seen = streams[stream]
        searched_from = max(len(seen) - len(MARK) - 24, 0)  # a marker split across frames
        seen.extend(data)
        if found := _END.search(seen, searched_from):
            ended[stream] = int(found.group(1))
            del seen[found.start() :]
            if len(ended) == len(streams):
                break
    return ExecResult(
        ended.get(STDOUT, -1),
        streams[STDOUT].decode(errors="replace"),
        streams[STDERR].decode(errors="replace"),
    )
