"""Ending the `labkit` process without the interpreter's teardown (0.1 s of
freeing what an ending process need not free), once it is safe to."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading

_exit_code: list[int] = []  # set once the app has exited on purpose


def _exit_now() -> None:
    """Registered first, so it runs last: after every other exit handler and after
    Python has waited for the threads."""
    if not _exit_code or threading.active_count() > 1:
        return  # an uncaught error, or a thread still running: Python's own ending
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader gone (`| head`), or closed
            stream.flush()
    os._exit(_exit_code[0])


def arm_quick_exit() -> None:
    """Call before the app runs."""
    atexit.register(_exit_now)


def record_exit(code: object) -> int:
    """Keep the exit code of the app's SystemExit (a message instead of a number is
    printed, as Python would, and is 1) for the quick exit, and return it."""
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    _exit_code.append(code or 0)
    return code or 0
