"""`labkit(*args)`: run the CLI in a child process, as a user would; `labkit_child(*args)`:
the same, left running, for a test that sends it Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any


def labkit(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labkit", *args], capture_output=True, text=True, timeout=timeout
    )


def labkit_child(*args: str, **popen: Any) -> subprocess.Popen[bytes]:
    """`labkit ARGS` running, Ctrl-C (SIGINT) as at a terminal: a suite started in the
    background of a script (`make test &`) inherits SIGINT ignored, and Python then
    keeps it ignored, so the child would never see the test's Ctrl-C."""
    return subprocess.Popen(
        [sys.executable, "-m", "labkit", *args],
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **popen,
    )
