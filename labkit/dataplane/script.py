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


def write_file(path: str, content: str) -> str:
    """A command that writes `content` to `path` (a heredoc, quoted: no expansion)."""
    marker = "LABKIT_EOF"
    assert marker not in content
    return f"mkdir -p {q(path.rsplit('/', 1)[0] or '/')}\ncat > {q(path)} <<'{marker}'\n{content.rstrip()}\n{marker}"
