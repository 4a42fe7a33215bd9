"""Last of the multi-host part: the sandbox's teardown leaves nothing behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

from labkit.runtime.sandbox import Sandbox, netns_prefix, sandbox_down


def test_sandbox_down_leaves_no_daemon_namespace_mount_or_folder(sandbox: Sandbox):
    sandbox_down(sandbox.name)
    assert sandbox_down(sandbox.name) == []  # idempotent: nothing left the second time
    listed = subprocess.run(["pgrep", "-a", "dockerd"], capture_output=True, text=True).stdout
    assert f"/labkit-sandbox/{sandbox.name}/" not in listed
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert netns_prefix(sandbox.name) not in namespaces
    assert f"/labkit-sandbox/{sandbox.name}/" not in Path("/proc/mounts").read_text()
    assert not Path(f"/var/lib/labkit-sandbox/{sandbox.name}").exists()
