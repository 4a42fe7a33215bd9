"""`labkit --help` and every verb's parsing load no library below the CLI (issue 14:
the CLI's own start is paid by every `labkit exec`)."""

from __future__ import annotations

import json
import subprocess
import sys

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
