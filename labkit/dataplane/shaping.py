"""Traffic shaping with tc: rates, times and losses in tc's units, and the qdisc
that gives a link its impairment. Pure: text only.

A qdisc shapes what an interface sends, so an impairment on a node's link
acts on the traffic that node sends on that network: a delay of 50ms on both
ends of a path adds 100ms to its round trip.
"""

from __future__ import annotations

from labkit.dataplane.script import q
from labkit.topology.units import (
    ShapingError,
    parse_loss,
    parse_rate,
    parse_time,
    tc_loss,
    tc_time,
)

__all__ = [
    "ShapingError",
    "netem_qdisc",
    "parse_loss",
    "parse_rate",
    "parse_time",
    "tbf_qdisc",
    "tc_loss",
    "tc_time",
]


def tbf_qdisc(rate: str) -> str:
    """A tbf that holds 20 ms of traffic in its bucket (at least 32 KiB, for GSO packets)."""
    bits = parse_rate(rate)
    burst = max(int(bits / 8 * 0.02), 32 * 1024)
    return f"tbf rate {int(bits)}bit burst {burst} latency 50ms"


def netem_qdisc(
    delay: str | None, jitter: str | None, loss: str | None, rate: str | None = None
) -> str:
    """A netem for delay (with jitter), loss and, folded in, a rate."""
    if not (delay or loss or rate):
        raise ShapingError("netem needs a delay, a loss or a rate")
    if jitter and not delay:
        raise ShapingError("jitter needs a delay")
    words = ["netem"]
    if delay:
        words += ["delay", q(delay)] + ([q(jitter)] if jitter else [])
    if loss:
        words += ["loss", q(loss)]
    if rate:
        words += ["rate", f"{int(parse_rate(rate))}bit"]
    return " ".join(words)
