"""ICMP echo with the `ping` tool, and what its summary says."""

from __future__ import annotations

import re
from dataclasses import dataclass

from labkit.core.endpoint import Endpoint, Target
from labkit.core.probe_results import address_of


@dataclass(frozen=True)
class PingResult:
    sent: int
    received: int
    rtt_min: float | None = None
    rtt_avg: float | None = None
    rtt_max: float | None = None
    error: str = ""

    @property
    def status(self) -> str:
        """One of OUTCOMES (ping says "Packet filtered" for admin-prohibited)."""
        if self.ok:
            return "ok"
        if "filtered" in self.error or "prohibited" in self.error.lower():
            return "denied"
        if "Unreachable" in self.error:
            return "unreachable"
        return "timeout" if self.error == "no reply" else "error"

    @property
    def loss(self) -> float:
        """Fraction lost, 0.0 to 1.0."""
        return 1.0 if self.sent == 0 else (self.sent - self.received) / self.sent

    @property
    def ok(self) -> bool:
        return self.received > 0

    def __str__(self) -> str:
        if not self.ok:
            return f"{self.received}/{self.sent} {self.error}".strip()
        return f"{self.received}/{self.sent} avg {self.rtt_avg:.2f} ms"


_SENT = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_RTT = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)/")


def parse_ping(output: str) -> PingResult:
    counts = _SENT.search(output)
    if not counts:
        return PingResult(
            0, 0, error=output.strip().splitlines()[-1] if output.strip() else "no output"
        )
    sent, received = int(counts.group(1)), int(counts.group(2))
    rtt = _RTT.search(output)
    errors = [
        line
        for line in output.splitlines()
        if any(word in line for word in ("too long", "Unreachable", "filtered", "rohibited"))
    ]
    if rtt:
        low, avg, high = (float(rtt.group(i)) for i in (1, 2, 3))
        return PingResult(sent, received, low, avg, high)
    return PingResult(sent, received, error=errors[0].strip() if errors else "no reply")


def ping(
    source: Endpoint,
    target: Target,
    *,
    count: int = 3,
    interval: float = 0.2,
    timeout: float = 1.0,
    size: int | None = None,
    dont_fragment: bool = False,
) -> PingResult:
    """ICMP echo from `source`; `dont_fragment` with `size` probes the path MTU."""
    # Not -q: only the per-packet lines name an ICMP error (unreachable, filtered).
    words = ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", str(timeout)]
    if size is not None:
        words += ["-s", str(size)]
    if dont_fragment:
        words += ["-M", "do"]
    words.append(address_of(target))
    deadline = count * (interval + timeout) + 3
    result = source.exec(" ".join(words), check=False, timeout=deadline)
    return parse_ping(result.output)
