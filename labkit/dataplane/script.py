"""Shell scripts as plans: a node's plan is a script run in one exec."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping


def q(value: object) -> str:
    """Quote one shell word."""
    return shlex.quote(str(value))


def in_netns(netns: str, command: str) -> str:
    """`command` (shell) run in the network namespace `netns` of the node it runs on."""
    return f"ip netns exec {q(netns)} sh -c {q(command)}"


def script(lines: Iterable[str]) -> str:
    """A fail-fast script from command lines (empty lines dropped)."""
    body = [line for line in lines if line]
    return "\n".join(["set -e", *body]) + "\n"


def batch(tool: str, commands: Iterable[str]) -> str:
    """Many `ip` or `bridge` commands in one process (`-batch`, which stops at the
    first error, as `set -e` does). A node of an N-node lab programs N-1 peers: a
    process per entry made bring-up grow with N squared (issue 14)."""
    body = list(commands)
    if not body:
        return ""
    marker = "LABKIT_BATCH"
    return f"{tool} -batch - <<'{marker}'\n" + "\n".join(body) + f"\n{marker}"


def commands(text: str) -> str:
    """A script with each batch written out as the commands it runs, one per line
    (`ip -batch` lines become `ip ...`): what a reader, or a test, looks for."""
    out: list[str] = []
    tool = None
    for line in text.splitlines():
        if tool is not None:
            tool = None if line == "LABKIT_BATCH" else tool
            if tool is not None:
                out.append(f"{tool} {line}")
        elif line.endswith(" -batch - <<'LABKIT_BATCH'"):
            tool = line.split()[0]
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def write_file(path: str, content: str) -> str:
    """A command that writes `content` to `path`. Shell builtins only (`[`, printf) where
    the folder exists: a node script writes a dozen files, and under load every
    process it starts costs 5-20 ms."""
    folder = q(path.rsplit("/", 1)[0] or "/")
    return f"[ -d {folder} ] || mkdir -p {folder}\nprintf '%s\\n' {q(content.rstrip())} > {q(path)}"


def sysctl_lines(settings: Mapping[str, object]) -> list[str]:
    """Kernel settings written to /proc/sys by the shell (no sysctl process: each one
    a node script starts costs 1-2 ms of CPU); a missing one fails as sysctl -w would."""
    return [
        f"printf '%s\\n' {q(str(value))} > /proc/sys/{key.replace('.', '/')}"
        for key, value in settings.items()
    ]


PART_MARK = "labkit-part"  # a line of a node script's output: a layer's part begins
# One exec's command is one argument to `sh -c`: the kernel caps it at 128 KiB.
SCRIPT_LIMIT = 120_000


def part(name: str, body: str) -> str:
    """A layer's part of a node script: its output follows a mark line, for `parts_of`."""
    return f"echo {PART_MARK} {name}\n{body.rstrip()}\n" if body.strip() else ""


def parts_of(output: str) -> dict[str, str]:
    """The output of each part of a node script, by name (what came before any part: "")."""
    found: dict[str, list[str]] = {"": []}
    current = found[""]
    for line in output.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == PART_MARK:
            current = found.setdefault(words[1], [])
        else:
            current.append(line)
    return {name: "\n".join(lines) + "\n" if lines else "" for name, lines in found.items()}


TIME_MARK = "labkit-time"


def timed(what: str, text: str) -> str:
    """`text`, then a line saying how long it took (`labkit-time <what> <ns>`)."""
    return (
        f'_t=$(date +%s%N)\n{text.rstrip()}\necho "{TIME_MARK} {what} $(( $(date +%s%N) - _t ))"\n'
    )


def parse_times(output: str) -> dict[str, float]:
    """The seconds of each `timed` part, from a script's output."""
    found = {}
    for line in output.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] == TIME_MARK and words[-1].isdigit():
            found[" ".join(words[1:-1])] = int(words[-1]) / 1e9
    return found
