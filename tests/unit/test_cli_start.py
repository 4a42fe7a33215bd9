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


def _verbs() -> list[str]:
    from typer.main import get_command_name

    from labkit.cli import app

    commands = [
        info.name or get_command_name(info.callback.__name__)
        for info in app.registered_commands
        if info.callback
    ]
    return commands + [info.name for info in app.registered_groups if info.name]


def test_a_run_converts_only_the_verb_it_names_and_every_verb_stays_reachable() -> None:
    from typer.main import get_command
    from typer.testing import CliRunner

    from labkit.cli import app
    from labkit.cli.one_verb import one_verb

    verbs = _verbs()
    assert len(verbs) > 20 and {"up", "down", "exec", "bench", "pod"} <= set(verbs)
    for verb in verbs:
        cut = one_verb(app, [verb, "--help"])
        listed = get_command(cut).list_commands(None)  # type: ignore[attr-defined,arg-type]
        assert sorted(listed) in ([verb], sorted([verb, "labkit-one-verb"]))
        shown = CliRunner().invoke(cut, [verb, "--help"], prog_name="labkit")
        assert shown.exit_code == 0, (verb, shown.output)
        assert f"Usage: labkit {verb}" in shown.output
        assert "labkit-one-verb" not in shown.output


def test_no_verb_or_an_unknown_one_gets_the_whole_app_and_its_suggestions() -> None:
    from typer.testing import CliRunner

    from labkit.cli import app
    from labkit.cli.one_verb import one_verb

    for args in ([], ["--help"], ["stat"]):
        assert one_verb(app, args) is app
    listed = CliRunner().invoke(app, ["--help"], prog_name="labkit").output
    assert "up" in listed and "labkit-one-verb" not in listed
    typo = CliRunner().invoke(app, ["stat"], prog_name="labkit")
    assert typo.exit_code == 2 and "Did you mean" in typo.output
