"""The command line: one module per verb group, all on one Typer `app`."""

import atexit
import contextlib
import os
import sys
import threading

from labkit.cli import bench, capture, faults, graph, host, hosts, kube, lab, pods, poke  # noqa: F401  (they register the verbs)
from labkit.cli.common import app

_exit_code: list[int] = []  # set once the app has exited on purpose


def _exit_now() -> None:
    """Registered first, so it runs last, after every other exit handler and after
    Python has waited for the threads: the process ends here, without the
    interpreter's teardown (0.1 s of freeing what an ending process need not free)."""
    if not _exit_code or threading.active_count() > 1:
        return  # an uncaught error, or a thread still running: Python's own ending
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader gone (`| head`), or closed
            stream.flush()
    os._exit(_exit_code[0])


def main() -> None:
    """The `labkit` command (what `python -m labkit` runs too)."""
    atexit.register(_exit_now)
    try:
        app()
    except SystemExit as exc:  # what the app always ends with
        code = exc.code
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
        _exit_code.append(code or 0)
        raise


__all__ = ["app", "main"]
