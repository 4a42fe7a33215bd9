"""The app cut down to the verb a run names.

Typer turns every verb's signature into click parameters at each start: 20 ms
for the whole app, paid by every `labkit up` and `labkit exec`. A run needs
its own verb only; `labkit --help`, a bare `labkit` and an unknown verb (whose
error suggests the near ones) still get the whole app.
"""

from __future__ import annotations

import copy

import typer
from typer.main import get_command_name

_STUB = "labkit-one-verb"  # keeps the cut a group, as the whole app is: never shown, never run


def one_verb(app: typer.Typer, args: list[str]) -> typer.Typer:
    """`app` with only the verb (command or group) `args` starts with, when it names one."""
    name = args[0] if args else ""
    commands = [
        info for info in app.registered_commands
        if info.callback and (info.name or get_command_name(info.callback.__name__)) == name
    ]  # fmt: skip
    groups = [info for info in app.registered_groups if info.name == name]
    if not commands and not groups:
        return app
    cut = copy.copy(app)
    cut.registered_commands, cut.registered_groups = commands, groups
    if not groups:  # one command alone would become the whole program, its name an argument
        cut.command(_STUB, hidden=True)(lambda: None)
    return cut
