"""Shell scripts as plans: a node's plan is a script run in one exec."""

from __future__ import annotations

import shlex
from collections.abc import Iterable


def q(value: object) -> str:
    """Quote one shell word."""
    return shlex.quote(str(value))


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
    """A command that writes `content` to `path` (a heredoc, quoted: no expansion)."""
    marker = "LABKIT_EOF"
    assert marker not in content
    return f"mkdir -p {q(path.rsplit('/', 1)[0] or '/')}\ncat > {q(path)} <<'{marker}'\n{content.rstrip()}\n{marker}"
