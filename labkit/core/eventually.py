"""Waiting for a condition: bounded, with the last failure shown when it gives up."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    check: Callable[[], T], *, within: float = 10.0, every: float = 0.2, what: str = "condition"
) -> T:
    """Retry `check` until it returns without raising; bounded, with the last error shown."""
    from tenacity import RetryError, Retrying, stop_after_delay, wait_fixed  # 7 ms: `up` needs none

    try:
        for attempt in Retrying(
            stop=stop_after_delay(within), wait=wait_fixed(every), reraise=False
        ):
            with attempt:
                return check()
    except RetryError as exc:
        last = exc.last_attempt.exception()
        raise AssertionError(f"{what} did not converge within {within:g} s; last: {last}") from last
    raise AssertionError(f"{what} was never checked")
