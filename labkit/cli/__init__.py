"""The command line: one module per verb group, all on one Typer `app`."""

from labkit.cli import bench, capture, faults, graph, host, hosts, kube, lab, pods, poke  # noqa: F401  (they register the verbs)
from labkit.cli.common import app


def main() -> None:  # pragma: no cover
    app()


__all__ = ["app", "main"]
