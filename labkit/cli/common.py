"""What every verb shares: the consoles, the error wrapper, finding the lab."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import docker.errors
import typer
from rich.console import Console
from rich.markup import escape

from labkit.core import state
from labkit.errors import LabkitError, UsageError
from labkit.lab import Lab
from labkit.runtime.docker import DockerRuntime
from labkit.runtime.select import hosts_file, runtime_for

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="labkit: emulate a container platform's network model inside Docker.\n\n"
    "Bring a lab up from a topology file, poke it, break it, measure it.",
)
console = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_TOPOLOGY = "default"


def friendly(function: F) -> F:
    """Print a LabkitError as one clear message and exit with its code."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except LabkitError as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except docker.errors.DockerException as exc:
            err.print(f"[red]error from the Docker engine:[/red] {escape(str(exc))}", highlight=False)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def only_lab(name: str | None, runtime: Any = None) -> str:
    """The lab named, or the only one up."""
    if name:
        return name
    running = sorted((runtime or DockerRuntime()).lab_names() & set(state.known_labs()))
    if len(running) == 1:
        return running[0]
    if not running:
        raise UsageError("no lab is up (labkit up [TOPOLOGY])")
    raise UsageError(f"several labs are up, name one: {', '.join(running)}")


def runtime_of(lab: str | None) -> Any:
    """The runtime a lab runs on: the hosts it was brought up on (its saved state),
    else $LABKIT_HOSTS, else this machine's engine."""
    saved = state.load(lab) if lab else None
    where = (saved[2].get("hosts") if saved else None) or {}
    return runtime_for(where.get("file") or hosts_file(), placement=where.get("placement"))


def attach_lab(name: str | None) -> Any:
    lab = name or only_lab(None, runtime_of(None))
    return Lab.attach(lab, runtime_of(lab))


def csv(text: str) -> list[str]:
    """`a, b,c` -> ["a", "b", "c"] (options that take lists)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def lab_of_endpoint(target: str, lab_name: str | None) -> tuple[Any, Any]:
    lab = attach_lab(lab_name)
    return lab, lab.endpoint(target)
