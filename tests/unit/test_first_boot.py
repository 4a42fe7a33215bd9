"""Reading a node's first-boot script result from its attached output frames."""

from __future__ import annotations

import subprocess

from labkit.runtime import boot
from labkit.runtime.base import ExecResult
from labkit.runtime.docker_exec import STDERR, STDOUT

OUT, ERR = STDOUT, STDERR


def marked(code: int) -> bytes:
    return f"\n{boot.MARK} {code}\n".encode()


def test_output_and_exit_status_until_both_markers():
    frames = [(OUT, b"hello\n"), (ERR, b"oops\n"), (OUT, marked(4)), (ERR, marked(4))]
    assert boot.result(iter(frames)) == ExecResult(4, "hello\n", "oops\n")


def test_a_marker_split_across_frames_and_stderr_after_stdout_ended():
    whole = b"x" * 5000 + marked(0)
    frames = [(OUT, whole[:5003]), (OUT, whole[5003:5010]), (OUT, whole[5010:])]
    frames += [(ERR, b"late"), (ERR, marked(0)), (OUT, b"the image's command says this")]
    assert boot.result(iter(frames)) == ExecResult(0, "x" * 5000, "late")


def test_the_reading_stops_at_the_markers():
    def frames():
        yield OUT, marked(0)
        yield ERR, marked(0)
        raise AssertionError("read past the markers")

    assert boot.result(frames()).ok


def test_a_container_that_ended_first_gives_what_it_said_and_no_status():
    assert boot.result(iter([(OUT, b"half")])) == ExecResult(-1, "half", "")


def test_the_image_command_follows_the_script():
    assert boot.command(["/init"], ["serve", "-v"]) == ["/init", "serve", "-v"]
    assert boot.command(None, ["sleep", "infinity"]) == ["sleep", "infinity"]
    argv = boot.entrypoint("echo hi")
    assert argv[:2] == ["sh", "-c"] and argv[-1] == "echo hi"


def test_the_boot_runs_the_script_once_per_container_then_the_image_command(tmp_path):
    """The shell of the entrypoint, run here with its file in tmp_path: the same
    container's token skips the script; another container's (a committed image) runs it."""
    shell = boot._BOOT.replace(boot.DONE, str(tmp_path / "done"))

    def boot_with(token: str) -> str:
        argv = ["sh", "-c", shell, "labkit-first-boot", token, "echo built", "echo", "served"]
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    assert boot_with("a1") == f"built\n\n{boot.MARK} 0\nserved\n"
    assert boot_with("a1") == "served\n"
    assert boot_with("b2").startswith("built\n")
