"""What a socket probe found: its result, the outcome it is classified as, and
the job (what to send where) the batch program runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from labkit.core.endpoint import Endpoint, Target


def address_of(target: Target) -> str:
    if isinstance(target, Endpoint):
        return str(target.ip)
    return str(target)


def label_of(target: Target) -> str:
    return target.name if isinstance(target, Endpoint) else str(target)


# -- what happened to a probe ---------------------------------------------------

# ICMP destination-unreachable codes (RFC 1812) a policy REJECT sends: net, host
# and administratively prohibited. The renderer uses 13 (icmp-admin-prohibited).
ICMP_UNREACHABLE = 3
PROHIBITED_CODES = frozenset({9, 10, 13})
PORT_UNREACHABLE_CODE = 3
OUTCOMES = ("ok", "denied", "refused", "timeout", "unreachable", "error")


def classify(ok: bool, error: str = "", icmp: tuple[int, int] | None = None) -> str:
    """What happened: ok; denied (rejected by policy); refused (no listener);
    timeout; unreachable (no route or no host); error (anything else).

    The ICMP type/code the kernel queued (IP_RECVERR) decides when present; the
    errno is the fallback: a REJECT's admin-prohibited surfaces as EHOSTUNREACH,
    like a dead host, so without the code only EACCES/EPERM (a local REJECT or
    DROP in the sender's own netfilter) say "denied".
    """
    if ok:
        return "ok"
    if icmp is not None and icmp[0] == ICMP_UNREACHABLE:
        if icmp[1] in PROHIBITED_CODES:
            return "denied"
        return "refused" if icmp[1] == PORT_UNREACHABLE_CODE else "unreachable"
    if "ECONNREFUSED" in error or "Refused" in error:
        return "refused"
    if "EACCES" in error or "EPERM" in error or "Permission denied" in error:
        return "denied"
    if "timed out" in error or "Timeout" in error:
        return "timeout"
    if "UNREACH" in error or "unreachable" in error.lower() or "No route" in error:
        return "unreachable"
    return "error"


@dataclass(frozen=True)
class TcpResult:
    ok: bool
    ms: float
    error: str = ""
    reply: str = ""
    local: str = ""
    status: str = ""  # one of OUTCOMES; derived from ok and error when not given
    icmp: tuple[int, int] | None = None  # the ICMP type/code that failed the probe
    rejected_by: str = ""  # who sent that ICMP error (a node, for a policy denial)
    sent: int = 0  # an echo job's echo requests sent, and answered
    received: int = 0

    def __post_init__(self) -> None:
        if not self.status:
            object.__setattr__(self, "status", classify(self.ok, self.error, self.icmp))

    @property
    def refused(self) -> bool:
        return self.status == "refused"

    @property
    def denied(self) -> bool:
        return self.status == "denied"

    @property
    def served_by(self) -> str:
        """The pod name the echo server put first on its greeting line."""
        return self.reply.split()[0] if self.reply.split() else ""

    def __str__(self) -> str:
        if self.ok:
            return f"ok {self.ms:.1f} ms" + (f" from {self.served_by}" if self.served_by else "")
        return f"{self.status} {self.ms:.1f} ms: {self.error}"


UdpResult = TcpResult


def result_of(data: dict[str, Any]) -> TcpResult:
    """One result of the batch program."""
    icmp = tuple(data["icmp"]) if data.get("icmp") else None
    return TcpResult(
        data["ok"], data["ms"], data["error"], data["reply"], data["local"],
        icmp=(icmp[0], icmp[1]) if icmp else None, rejected_by=data.get("by", ""),
        sent=data.get("sent", 0), received=data.get("received", 0),
    )  # fmt: skip


@dataclass(frozen=True)
class Job:
    """One probe of a batch: what to send to which address."""

    kind: str  # "tcp" | "udp" | "icmp"
    address: str
    port: int = 0
    timeout: float = 2.0
    payload: str = ""
    count: int = 1  # echo requests (icmp): the job is ok when any is answered, as ping's

    def row(self) -> list[Any]:
        """The job as the batch program reads it."""
        return [self.kind, self.address, self.port, self.timeout, self.payload, self.count]
