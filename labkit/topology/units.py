"""Rates, times and losses in tc's units, parsed and checked. Pure."""

from __future__ import annotations

import math
import re

from labkit.errors import UsageError


class ShapingError(UsageError, ValueError):
    """A rate, time or loss tc would not take. A ValueError too, so the topology
    model reports it where it stands in the file."""


RATE_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
MIN_RATE_BITS = 8.0  # tc's rates are bytes per second underneath
MAX_RATE_BITS = 100e9

# tc's time units (tc-netem(8), TIME in tc(8)); a bare number would mean
# microseconds to tc, which nobody means: a unit is required.
TIME_UNITS = {
    "s": 1.0, "sec": 1.0, "secs": 1.0,
    "ms": 1e-3, "msec": 1e-3, "msecs": 1e-3,
    "us": 1e-6, "usec": 1e-6, "usecs": 1e-6,
}  # fmt: skip
MAX_SECONDS = 60.0  # past this a lab's bounded waits would all time out
NUMBER = r"(\d+(\.\d*)?|\.\d+)"


def parse_rate(rate: str) -> float:
    """ "20mbit" -> 2e7 bits per second (tc's units)."""
    text = str(rate).strip().lower()
    match = re.fullmatch(rf"{NUMBER}\s*([a-z]+)", text)
    if not match or match.group(3) not in RATE_UNITS:
        raise ShapingError(f"rate {rate!r}: use a number and bit, kbit, mbit or gbit (e.g. 20mbit)")
    bits = float(match.group(1)) * RATE_UNITS[match.group(3)]
    if not MIN_RATE_BITS <= bits <= MAX_RATE_BITS:
        raise ShapingError(f"rate {rate!r}: must be between 8bit and 100gbit")
    return bits


def parse_time(value: str, what: str = "time") -> float:
    """ "50ms" -> 0.05 seconds; tc's units: s, ms, us (and their long forms)."""
    text = str(value).strip().lower()
    match = re.fullmatch(rf"{NUMBER}\s*([a-z]+)", text)
    if not match or match.group(3) not in TIME_UNITS:
        raise ShapingError(f"{what} {value!r}: use a number and s, ms or us (e.g. 50ms)")
    seconds = float(match.group(1)) * TIME_UNITS[match.group(3)]
    if not math.isfinite(seconds) or seconds > MAX_SECONDS:
        raise ShapingError(f"{what} {value!r}: at most {MAX_SECONDS:g}s")
    return seconds


def parse_loss(value: str | float) -> float:
    """ "1%", "0.5%", 1 or 0.5 -> a percentage in 0..100."""
    text = str(value).strip()
    match = re.fullmatch(rf"{NUMBER}\s*%?", text)
    if not match:
        raise ShapingError(f"loss {value!r}: use a percentage, e.g. 1% or 0.5%")
    percent = float(match.group(1))
    if percent > 100:
        raise ShapingError(f"loss {value!r}: a percentage is at most 100%")
    return percent


def tc_time(seconds: float) -> str:
    """Seconds in tc's microseconds, exact: 0.05 -> "50000us"."""
    return f"{round(seconds * 1e6)}us"


def tc_loss(percent: float) -> str:
    return f"{percent:g}%"
