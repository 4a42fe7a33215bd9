"""The command line: one module per verb group, all on one Typer `app`."""

import sys

from labkit.cli import bench, capture, faults, graph, host, hosts, kube, lab, pods, poke  # noqa: F401  (they register the verbs)
from labkit.cli.common import app
from labkit.cli.one_verb import one_verb
from labkit.cli.quick_exit import arm_quick_exit, record_exit


def main() -> None:
    """The `labkit` command (what `python -m labkit` runs too)."""
    arm_quick_exit()
    try:
        one_verb(app, sys.argv[1:])()
    except SystemExit as exc:  # what the app always ends with
        exc.code = record_exit(exc.code)
        raise


__all__ = ["app", "main"]
