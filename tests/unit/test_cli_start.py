"""`labkit --help` and every verb's parsing load no library below the CLI (issue 14:
the CLI's own start is paid by every `labkit exec`)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

HEAVY = (
    "docker",
    "pydantic",
    "rich",
    "labkit.lab",
    "labkit.topology",
    "labkit.runtime",
    "labkit.core",
)


def test_the_cli_loads_without_the_library() -> None:
    script = (
        "import json, sys\n"
        "from labkit.cli import app\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    assert json.loads(found) == []


def test_the_graph_verb_offers_every_format() -> None:
    from labkit.cli.graph import FORMAT_HELP
    from labkit.topology.graph import FORMATS

    assert FORMAT_HELP.split(" | ") == list(FORMATS)


def test_a_lab_without_manifests_loads_none_of_their_code() -> None:
    script = (
        "import sys\n"
        "import labkit.lab\n"
        "print(sorted(m for m in sys.modules if m.startswith('labkit.topology.kube')))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    assert found.strip() == "[]"


def test_the_cli_console_made_on_first_use_serves_rich_progress_and_tables(capsys) -> None:
    from rich.progress import Progress
    from rich.table import Table

    from labkit.cli.common import console

    with Progress(console=console(), transient=True) as bar:  # what `labkit check` does
        bar.add_task("probing", total=None)
    table = Table("a")
    table.add_row("labkit")
    console().print(table)
    assert "labkit" in capsys.readouterr().out


def labkit(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labkit", *argv], capture_output=True, text=True, timeout=60
    )


def test_the_quick_exit_keeps_the_exit_codes_and_every_line() -> None:
    helped = labkit("--help")
    assert helped.returncode == 0 and helped.stdout.rstrip().splitlines()[-1].strip()
    assert "Commands" in helped.stdout and "down" in helped.stdout  # flushed, all of it
    assert labkit("no-such-verb").returncode == 2
    bad = labkit("up", "/nonexistent/lab.yaml")
    assert bad.returncode == 2 and "no such file: /nonexistent/lab.yaml" in bad.stderr


def test_the_quick_exit_leaves_a_thread_still_running_to_python() -> None:
    from labkit.cli.quick_exit import _exit_code, _exit_now

    started = threading.Event()
    worker = threading.Thread(target=lambda: started.wait(5))
    worker.start()
    _exit_code.append(3)
    try:
        _exit_now()  # returns: another thread runs (here, the test goes on)
    finally:
        _exit_code.clear()
        started.set()
        worker.join()
