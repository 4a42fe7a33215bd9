"""Putting a daemon's configuration in place: checked by the daemon first. Pure."""

from __future__ import annotations

from collections.abc import Callable

from labkit.dataplane.script import write_file

CHECK_FAILED = 65  # exit status of the deploy script when the checker refuses


def checked_deploy_script(
    text: str,
    config_path: str,
    check: Callable[[str], str],
    running: str,
    reload: str,
    start: str,
    prepare: str = "",
) -> str:
    """Write `text` as a candidate and check it; only if valid put it in place and reload
    (or start). One exec: the configuration travels in the script. `prepare` puts the
    files the configuration names in place first (certificates...)."""
    candidate = f"{config_path}.candidate"
    return "\n".join(
        [
            "set -e",  # a checker's refusal is caught by `if`, not by this
            "mkdir -p /run/labkit /var/log/labkit",  # the checker opens the pid and log files
            *([prepare] if prepare else []),
            write_file(candidate, text),
            f"if ! out=$({check(candidate)} 2>&1); then",
            '  printf "%s\\n" "$out"',
            f"  rm -f {candidate}",
            f"  exit {CHECK_FAILED}",
            "fi",
            f"mv {candidate} {config_path}",
            start_or_reload(running, reload, start),
        ]
    )


def start_or_reload(running: str, reload: str | None, start: str) -> str:
    """Reload if running (no reload: leave it be), else start. Newlines, not `;`: a
    start command may end in `&`."""
    return f"if {{ {running}; }}; then\n  {reload or ':'}\nelse\n  {start}\nfi"
