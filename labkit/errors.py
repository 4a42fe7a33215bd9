"""Errors labkit reports to users. Each says what is wrong and where."""

from __future__ import annotations

from dataclasses import dataclass


class LabkitError(Exception):
    """A failure labkit explains itself; the CLI prints it without a traceback."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a topology: the path to it in the file and why."""

    path: tuple[str | int, ...]
    message: str
    where: str = ""  # "file:line:col", filled in by the loader when it knows
    subject: str = ""  # a manifest's document, "Kind/namespace/name", when there is one

    def __str__(self) -> str:
        dotted = ".".join(str(part) for part in self.path) or "(top level)"
        prefix = f"{self.where}: " if self.where else ""
        subject = f"{self.subject}: " if self.subject else ""
        return f"{prefix}{subject}{dotted}: {self.message}"


class TopologyError(LabkitError):
    """The topology file is wrong; nothing was created."""

    exit_code = 2

    def __init__(self, problems: list[Problem], source: str = "") -> None:
        self.problems = problems
        self.source = source
        header = f"invalid topology {source}" if source else "invalid topology"
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{header}:\n{lines}")


class UsageError(LabkitError):
    """The user asked for something that cannot be done as asked (exit code 2)."""

    exit_code = 2


class FeatureMissing(LabkitError):
    """The host's kernel or engine lacks something a feature needs."""

    exit_code = 2


class EngineUnavailable(LabkitError):
    """No Docker engine answers."""


class LabNotFound(LabkitError):
    exit_code = 2
