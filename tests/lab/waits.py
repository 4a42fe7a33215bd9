"""Waiting for a condition in lab tests: `expect.eventually` retries a check that raises."""

from __future__ import annotations

from collections.abc import Callable

from labkit import expect


def holds(predicate: Callable[[], bool], *, within: float = 10.0, what: str) -> None:
    """Wait until `predicate()` is true, bounded; fail naming `what`."""

    def check() -> None:
        assert predicate(), what

    expect.eventually(check, within=within, what=what)
