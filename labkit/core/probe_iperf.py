"""Throughput with iperf3: a one-off server, a client, its JSON report."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from labkit.core.endpoint import Endpoint, Target
from labkit.core.probe_results import address_of
from labkit.errors import LabkitError


@dataclass(frozen=True)
class IperfResult:
    protocol: str
    bits_per_second: float
    retransmits: int | None = None
    jitter_ms: float | None = None
    lost_percent: float | None = None
    streams: int = 1
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def gbit_per_s(self) -> float:
        return self.bits_per_second / 1e9

    def __str__(self) -> str:
        text = f"{self.gbit_per_s:.2f} Gbit/s {self.protocol}"
        if self.lost_percent is not None:
            text += f", loss {self.lost_percent:.2f}%"
        return text


def parse_iperf(document: dict[str, Any]) -> IperfResult:
    if "error" in document:
        raise LabkitError(f"iperf3: {document['error']}")
    end = document["end"]
    protocol = document["start"]["test_start"]["protocol"]
    streams = int(document["start"]["test_start"].get("num_streams", 1))
    if protocol == "UDP":
        total = end["sum"]
        return IperfResult(
            "UDP", total["bits_per_second"], None, total.get("jitter_ms"), total.get("lost_percent"),
            streams, document,
        )  # fmt: skip
    return IperfResult(
        "TCP", end["sum_received"]["bits_per_second"], end["sum_sent"].get("retransmits"),
        streams=streams, raw=document,
    )  # fmt: skip


class _NotListening(Exception):
    pass


def iperf(
    client: Endpoint,
    server: Endpoint,
    *,
    seconds: float = 3,
    udp: bool = False,
    streams: int = 1,
    bitrate: str | None = None,
    length: int | None = None,
    port: int = 5201,
    target: Target | None = None,
) -> IperfResult:
    """iperf3 from `client` to a one-off server started on `server`.

    `target` overrides the address dialled (a Service VIP in front of `server`).
    """
    server.exec(f"iperf3 -s -1 -D -p {port} --logfile /tmp/iperf3-{port}.log", timeout=10)
    words = [
        "iperf3",
        "-J",
        "-c",
        address_of(target or server),
        "-p",
        str(port),
        "-t",
        str(seconds),
    ]
    words += ["-P", str(streams)]
    if udp:
        words += ["-u", "-b", bitrate or "0"]
    elif bitrate:
        words += ["-b", bitrate]
    if length:
        words += ["-l", str(length)]

    from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed  # at use

    @retry(
        retry=retry_if_exception_type(_NotListening),
        stop=stop_after_delay(5),
        wait=wait_fixed(0.1),
        reraise=True,
    )
    def run() -> IperfResult:
        result = client.exec(" ".join(words), check=False, timeout=seconds + 20)
        try:
            document = json.loads(result.stdout)
        except json.JSONDecodeError:
            raise LabkitError(f"iperf3 printed no JSON: {result.output[-300:]}") from None
        if "refused" in str(document.get("error", "")):
            raise _NotListening()
        return parse_iperf(document)

    try:
        return run()
    finally:
        server.exec(f"pkill -f 'iperf3 -s -1 -D -p {port} ' || true", check=False)
