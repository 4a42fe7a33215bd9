"""A command in the engine host's own network namespace, in a short-lived container
(the engine may be on another machine: DOCKER_HOST, a Swarm host)."""

from __future__ import annotations

from typing import Any

from labkit.runtime.base import LAB_LABEL, ExecResult

EXIT = "labkit-engine-host-exit"  # the last line of stderr: the command's exit status


def run_on_engine_host(
    client: Any, image: str, argv: list[str], *, cap_add: list[str],
    security_opt: list[str] | None = None,
) -> ExecResult:  # fmt: skip
    """`argv` with `--network host`, as `docker run --rm` runs it: the engine removes
    the container when it exits (auto_remove), so a caller killed meanwhile leaves
    none behind. Its output comes through an attach made before the start; the exit
    status, gone with the container, is its last line on stderr."""
    api = client.api
    created = api.create_container(
        image,
        ["sh", "-c", f'"$@"; echo "{EXIT} $?" >&2', "sh", *argv],
        entrypoint=[],
        labels={LAB_LABEL: "probe"},  # killed before its start: `remove_dead_probes`
        host_config=api.create_host_config(
            network_mode="host", cap_add=cap_add, security_opt=security_opt, auto_remove=True
        ),
    )
    frames = api.attach(created["Id"], stream=True, logs=True, demux=True)
    api.start(created["Id"])
    stdout, stderr = bytearray(), bytearray()
    for out, err in frames:
        stdout += out or b""
        stderr += err or b""
    said, _, status = stderr.decode(errors="replace").rpartition(f"{EXIT} ")
    code = int(status) if status.strip().isdigit() else -1  # cut short: no status line
    return ExecResult(code, stdout.decode(errors="replace"), said)
