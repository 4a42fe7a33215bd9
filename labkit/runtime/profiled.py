"""A Runtime that times every call it passes on: where `labkit up --profile` says the time goes."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from labkit.runtime.base import Runtime

# Every method of the Runtime protocol, timed; anything else is passed through untimed.
TIMED = {
    "taken_subnets", "node_image", "has_image", "node_mode", "engine_info", "run_throwaway",
    "create_network", "create_node", "create_node_running", "start_node", "stop_node",
    "is_running", "exec", "put_file", "lab_names", "lab_running", "lab_labels", "labelled",
    "remove_lab",
}  # fmt: skip


@dataclass
class CallStats:
    count: int = 0
    seconds: float = 0.0
    slowest: float = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.seconds += seconds
        self.slowest = max(self.slowest, seconds)


@dataclass
class Profile:
    """Engine calls by method, and execs by container (the node they ran on)."""

    calls: dict[str, CallStats] = field(default_factory=lambda: defaultdict(CallStats))
    execs: dict[str, CallStats] = field(default_factory=lambda: defaultdict(CallStats))

    def rows(self) -> list[tuple[str, int, float, float]]:
        """(what, count, total seconds, slowest seconds), the most expensive first."""
        found = [
            (f"engine {name}", s.count, s.seconds, s.slowest) for name, s in self.calls.items()
        ]
        found += [
            (f"exec on {name}", s.count, s.seconds, s.slowest) for name, s in self.execs.items()
        ]
        return sorted(found, key=lambda row: row[2], reverse=True)


class ProfiledRuntime:
    """Wraps a runtime; `profile` fills in as calls are made (from any thread)."""

    def __init__(self, inner: Runtime) -> None:
        self.inner = inner
        self.profile = Profile()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if name not in TIMED or not callable(target):
            return target
        return self._timed(name, target)

    def _timed(self, name: str, target: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return target(*args, **kwargs)
            finally:
                seconds = time.perf_counter() - started
                with self._lock:
                    self.profile.calls[name].add(seconds)
                    if name == "exec" and args:
                        self.profile.execs[str(args[0])].add(seconds)

        return call


def phase_rows(timings: Mapping[str, float]) -> list[tuple[str, float]]:
    return [(phase, seconds) for phase, seconds in timings.items()]
