"""What every verb shares: the consoles, the error wrapper, finding the lab.

The CLI imports the library when a verb runs, not at start: `labkit --help`
and every `labkit exec` would otherwise pay for loading all of it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from functools import cache, wraps
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from labkit.errors import LabkitError, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from labkit.lab import Lab
    from labkit.runtime.base import Runtime
    from labkit.runtime.docker import DockerRuntime

app = typer.Typer(
    rich_markup_mode=None,
    no_args_is_help=True,
    add_completion=False,
    help="labkit: emulate a container platform's network model inside Docker.\n\n"
    "Bring a lab up from a topology file, poke it, break it, measure it.",
)


# Made on first use: `labkit --help` never loads rich (40 ms).
@cache
def console() -> Console:
    """The CLI's console (stdout)."""
    from rich.console import Console

    return Console()


@cache
def err() -> Console:
    """The CLI's console for messages (stderr)."""
    from rich.console import Console

    return Console(stderr=True)


@contextlib.contextmanager
def progress_line(first: str) -> Iterator[Callable[[str], None]]:
    """A spinner with the latest step, on a terminal; yields the function that says the
    next one. Elsewhere (a pipe, CI) nothing would show: rich, which the end's tables
    need, is loaded in a thread from the first step said on, while this one mostly
    waits on the engine (loaded before, it took the GIL from the engine queries and
    the checks before the first step: 50 ms of a default up)."""
    if sys.stdout.isatty():
        with console().status(first) as status:
            yield lambda message: status.update(message)
        return
    loading = threading.Thread(target=_load, args=("rich.console", "rich.table"), daemon=True)
    yield lambda _: None if loading.ident else loading.start()


def _load(*modules: str) -> None:
    for module in modules:
        importlib.import_module(module)


def escape(text: str) -> str:
    """rich markup escaped (rich loads with the first message)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_TOPOLOGY = "default"


def _process_started() -> float:
    """When this process began, on the perf_counter clock (from /proc; now where unknown)."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            ago = float(uptime.read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
        return time.perf_counter() - max(ago, 0.0)
    except (OSError, ValueError, IndexError):
        return time.perf_counter()


PROCESS_STARTED = _process_started()


def friendly(function: F) -> F:
    """Print a LabkitError as one clear message and exit with its code."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except LabkitError as exc:
            err().print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err().print("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:
            if not type(exc).__module__.startswith("docker."):  # the SDK's errors, unimported
                raise
            err().print(
                f"[red]error from the Docker engine:[/red] {escape(str(exc))}", highlight=False
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def engine() -> DockerRuntime:
    from labkit.runtime.docker import DockerRuntime

    return DockerRuntime()


def only_lab(name: str | None, runtime: Runtime | None = None) -> str:
    """The lab named, or the only one up."""
    from labkit.core import state

    if name:
        return name
    running = sorted((runtime or engine()).lab_names() & set(state.known_labs()))
    if len(running) == 1:
        return running[0]
    if not running:
        raise UsageError("no lab is up (labkit up [TOPOLOGY])")
    raise UsageError(f"several labs are up, name one: {', '.join(running)}")


def runtime_of(lab: str | None) -> Runtime:
    """The runtime a lab runs on: the hosts it was brought up on (its saved state),
    else $LABKIT_HOSTS, else this machine's engine."""
    from labkit.core import state

    return runtime_from_state(state.extras(lab) if lab else None)


def runtime_from_state(saved: Mapping[str, Any] | None) -> Runtime:
    """The runtime of a lab's saved state (`state.extras`): its hosts, else the default."""
    from labkit.runtime.select import hosts_file, runtime_for

    where = (saved or {}).get("hosts") or {}
    return runtime_for(where.get("file") or hosts_file(), placement=where.get("placement"))


def attach_lab(name: str | None) -> Lab:
    from labkit.lab import Lab

    lab = name or only_lab(None, runtime_of(None))
    return Lab.attach(lab, runtime_of(lab))


def csv(text: str) -> list[str]:
    """`a, b,c` -> ["a", "b", "c"] (options that take lists)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def recorded_target(target: str, lab_name: str | None) -> tuple[str, str | None] | None:
    """A node's or pod's container and network namespace (None: the node's own), as
    its lab's state recorded them, for a lab on this machine's engine: found without
    loading the lab. None where that is not enough (hosts, a name given another way)."""
    from labkit.core import state
    from labkit.runtime.select import hosts_file

    if hosts_file():
        return None
    extras = state.extras(only_lab(lab_name))
    if not extras or extras.get("hosts"):
        return None
    found = (extras.get("exec_targets") or {}).get(target)
    return (found[0], found[1]) if found else None


def lab_of_endpoint(target: str, lab_name: str | None) -> tuple[Any, Any]:
    lab = attach_lab(lab_name)
    return lab, lab.endpoint(target)


def print_notes(notes: list[str]) -> None:
    """What merging manifests has to tell: the ignored kinds in one line, the warnings."""
    for note in notes:
        err().print(f"[yellow]{escape(note)}[/yellow]", highlight=False, soft_wrap=True)
