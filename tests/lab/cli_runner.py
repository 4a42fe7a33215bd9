"""`labkit(*args)`: run the CLI in a child process, as a user would."""

from __future__ import annotations

import subprocess
import sys


def labkit(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labkit", *args], capture_output=True, text=True, timeout=timeout
    )
