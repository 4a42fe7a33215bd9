"""Fault renderers: partition rules and tc qdiscs. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from labkit.dataplane.script import q, script
from labkit.errors import UsageError

PARTITION_IN = "LABKIT-FAULT-PART-IN"  # raw PREROUTING: what arrives from the other side
PARTITION_OUT = "LABKIT-FAULT-PART-OUT"  # raw OUTPUT: what the node sends to the other side


def partition_script(addresses: Sequence[str], macs: Sequence[str]) -> str:
    """Raw-table chains that drop everything from and to the given peers (empty: heal)."""
    lines = ["*raw", f":{PARTITION_IN} - [0:0]", f":{PARTITION_OUT} - [0:0]"]
    lines += [f"-A {PARTITION_IN} -s {address}/32 -j DROP" for address in addresses]
    lines += [f"-A {PARTITION_IN} -m mac --mac-source {mac} -j DROP" for mac in macs]
    lines += [f"-A {PARTITION_OUT} -d {address}/32 -j DROP" for address in addresses]
    lines.append("COMMIT")
    payload = "\n".join(lines)
    return script(
        [
            f"iptables-restore --noflush <<'LABKIT_EOF'\n{payload}\nLABKIT_EOF",
            f"iptables -t raw -C PREROUTING -j {PARTITION_IN} 2>/dev/null || "
            f"iptables -t raw -I PREROUTING 1 -j {PARTITION_IN}",
            f"iptables -t raw -C OUTPUT -j {PARTITION_OUT} 2>/dev/null || "
            f"iptables -t raw -I OUTPUT 1 -j {PARTITION_OUT}",
        ]
    )


UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}


def parse_rate(rate: str) -> float:
    """ "20mbit" -> 2e7 bits per second (tc's units)."""
    text = rate.strip().lower()
    for unit in sorted(UNITS, key=len, reverse=True):
        if text.endswith(unit):
            try:
                return float(text[: -len(unit)]) * UNITS[unit]
            except ValueError:
                break
    raise UsageError(f"rate {rate!r}: use a number and bit, kbit, mbit or gbit (e.g. 20mbit)")


def tbf_qdisc(rate: str) -> str:
    """A tbf that holds 20 ms of traffic in its bucket (at least 32 KiB, for GSO packets)."""
    bits = parse_rate(rate)
    burst = max(int(bits / 8 * 0.02), 32 * 1024)
    return f"tbf rate {int(bits)}bit burst {burst} latency 50ms"


def netem_qdisc(delay: str | None, jitter: str | None, loss: str | None) -> str:
    if not (delay or loss):
        raise UsageError("netem needs a delay or a loss")
    if jitter and not delay:
        raise UsageError("jitter needs a delay")
    words = ["netem"]
    if delay:
        words += ["delay", q(delay)] + ([q(jitter)] if jitter else [])
    if loss:
        words += ["loss", q(loss)]
    return " ".join(words)
