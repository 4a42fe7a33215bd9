"""Continuous load from a lab node, and what it saw: failed requests, outages.

    with ContinuousClient(lab.node("client"), vip, host="web.example") as client:
        ...  # break something
    result = client.result
    result.failed, result.outage_s

The client (`labkit/http_loop.py`) runs in the node; this side starts it,
stops it and reads its record. Analysis is pure (`LoadResult`).
"""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from types import TracebackType

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from labkit import expect
from labkit.core.endpoint import Endpoint
from labkit.dataplane.script import q, write_file
from labkit.errors import LabkitError

LOOP_SCRIPT = Path(__file__).with_name("http_loop.py")
REMOTE_SCRIPT = "/usr/local/lib/labkit/http_loop.py"
_ids = itertools.count(1)


@dataclass(frozen=True)
class Request:
    start: float
    end: float
    status: int  # 0: no answer (detail says why)
    detail: str  # the answering pod, or the error

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400


@dataclass(frozen=True)
class LoadResult:
    requests: tuple[Request, ...]

    @property
    def sent(self) -> int:
        return len(self.requests)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.requests if not r.ok)

    @property
    def ok(self) -> int:
        return self.sent - self.failed

    def errors(self) -> Counter[str]:
        return Counter(r.detail or str(r.status) for r in self.requests if not r.ok)

    def pods(self) -> Counter[str]:
        """Which pods answered, and how often."""
        return Counter(r.detail for r in self.requests if r.ok and r.detail)

    @property
    def outage_s(self) -> float:
        """The longest time without a successful answer, around failures.

        From the end of the last success before a run of failures to the end
        of the first success after it; 0 when nothing failed. Its resolution
        is the client's request timeout.
        """
        longest = 0.0
        last_ok_end: float | None = self.requests[0].start if self.requests else None
        failing = False
        for request in self.requests:
            if not request.ok:
                failing = True
                continue
            if failing and last_ok_end is not None:
                longest = max(longest, request.end - last_ok_end)
            failing = False
            last_ok_end = request.end
        if failing and last_ok_end is not None:  # never recovered: until the last attempt
            longest = max(longest, self.requests[-1].end - last_ok_end)
        return longest

    @property
    def recovered(self) -> bool:
        """The last request succeeded."""
        return bool(self.requests) and self.requests[-1].ok

    def after(self, moment: float) -> LoadResult:
        return LoadResult(tuple(r for r in self.requests if r.start >= moment))

    def summary(self) -> str:
        errors = ", ".join(f"{k} x{v}" for k, v in self.errors().most_common()) or "none"
        return (
            f"{self.sent} requests, {self.failed} failed ({errors}), "
            f"longest outage {self.outage_s:.2f} s"
        )


def parse_result(text: str) -> LoadResult:
    """The client's JSON lines (a trailing "done" line and a torn last line are fine)."""
    requests = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # the line being written
        if isinstance(record, list):
            requests.append(Request(*record))
    return LoadResult(tuple(requests))


class _NotYet(Exception):
    pass


class ContinuousClient:
    """Requests sent one after another from `source` to `address`, in the background.

    Bounded: it stops after `duration` seconds even if nobody stops it.
    """

    def __init__(
        self,
        source: Endpoint,
        address: IPv4Address | str,
        port: int = 80,
        *,
        path: str = "/",
        host: str | None = None,
        timeout: float = 0.5,
        pause: float = 0.01,
        duration: float = 60.0,
    ) -> None:
        self.source = source
        self.duration = duration
        run = f"{os.getpid()}-{next(_ids)}"
        self.out = f"/tmp/labkit-load-{run}.json"
        self.stop_file = f"/tmp/labkit-load-{run}.stop"
        words = [
            "python3", REMOTE_SCRIPT, "--address", str(address), "--port", str(port),
            "--path", path, "--timeout", str(timeout), "--pause", str(pause),
            "--duration", str(duration), "--stop-file", self.stop_file, "--out", self.out,
        ]  # fmt: skip
        if host:
            words += ["--host", host]
        self.command = " ".join(q(word) for word in words)
        self.result: LoadResult | None = None

    def start(self) -> ContinuousClient:
        # One exec: the client's code travels in the script.
        self.source.exec(
            f"{write_file(REMOTE_SCRIPT, LOOP_SCRIPT.read_text())}\n"
            f"rm -f {self.out} {self.stop_file}; setsid {self.command} </dev/null >/dev/null 2>&1 &"
        )
        return self

    def so_far(self) -> LoadResult:
        """What the client has seen until now (it keeps running)."""
        return parse_result(self.source.exec(f"cat {self.out} 2>/dev/null", check=False).stdout)

    def wait_successes(self, count: int = 5, within: float = 15.0) -> LoadResult:
        """Wait until `count` more requests succeeded than when called (the path works now)."""
        before = self.so_far().ok

        def enough() -> LoadResult:
            seen = self.so_far()
            if seen.ok < before + count:
                raise AssertionError(f"{seen.ok - before} new successes ({seen.summary()})")
            return seen

        return expect.eventually(enough, within=within, every=0.2, what=f"{count} answers")

    def stop(self, within: float = 15.0) -> LoadResult:
        """Ask the client to finish and read what it saw."""
        self.source.exec(f"touch {self.stop_file}")
        return self.collect(within)

    def collect(self, within: float | None = None) -> LoadResult:
        """Wait for the client to end (by itself or stopped) and read its record."""
        limit = within if within is not None else self.duration + 15.0

        def read() -> str:
            result = self.source.exec(f"cat {self.out}", check=False)
            if not (result.ok and result.stdout.rstrip().endswith('"done"')):
                raise _NotYet()
            return result.stdout

        try:
            text = Retrying(
                stop=stop_after_delay(limit), wait=wait_fixed(0.3),
                retry=retry_if_exception_type(_NotYet), reraise=True,
            )(read)  # fmt: skip
        except _NotYet:
            raise LabkitError(
                f"the load client on {self.source} wrote no result within {limit:g} s"
            ) from None
        self.source.exec(f"rm -f {self.out} {self.stop_file}", check=False)
        self.result = parse_result(text)
        return self.result

    def __enter__(self) -> ContinuousClient:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.stop()
        else:  # do not hide the real error behind a collection problem
            self.source.exec(f"touch {self.stop_file}", check=False)
