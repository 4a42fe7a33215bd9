"""The batched reachability matrix: one exec per source, sampling, selectors, progress."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from labkit import expect
from labkit.runtime.base import ExecResult


@dataclass
class FakePod:
    """A source that answers every batch: ok unless the target is in `closed`."""

    name: str
    ip: IPv4Address
    labels: dict[str, str] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)
    execs: int = 0

    def __str__(self) -> str:
        return self.name

    def exec(self, command: str, *, check: bool = True, timeout: float | None = None) -> ExecResult:
        self.execs += 1
        jobs = json.loads(shlex.split(command)[-1])
        rows = [
            {"ok": False, "error": "OSError EHOSTUNREACH", "reply": "", "local": "",
             "icmp": [3, 13], "by": "10.0.0.1", "ms": 0.3}
            if address in self.closed
            else {"ok": True, "error": "", "reply": address, "local": "", "icmp": None,
                  "by": "", "ms": 0.2}
            for _, address, *_ in jobs
        ]  # fmt: skip
        return ExecResult(0, json.dumps(rows) + "\n", "")


def fake_pods(count: int) -> list[FakePod]:
    return [
        FakePod(f"p{i}", IPv4Address(f"10.244.0.{i + 2}"), {"app": "web" if i % 2 else "db"})
        for i in range(count)
    ]


def test_one_exec_per_source_and_progress_reaches_the_total():
    pods = fake_pods(6)
    pods[0].closed = {str(pods[1].ip)}  # an Endpoint by shape: dialled by its IP
    seen: list[tuple[int, int]] = []
    matrix = expect.reachability_matrix(
        pods, pods, progress=lambda done, total: seen.append((done, total))
    )  # type: ignore[arg-type]
    assert [p.execs for p in pods] == [1] * 6
    assert len(matrix.cells) == 30
    assert seen[-1] == (30, 30) and len(seen) == 6  # one report per exec
    assert matrix.cells[("p0", "p1")].status == "denied"
    assert "DENIED" in matrix.render()
    assert matrix.counts() == {"ok": 29, "denied": 1}
    assert matrix.failed() == ["p0 -> p1: denied 0.3 ms: OSError EHOSTUNREACH"]


def test_a_sample_is_repeatable_and_probes_only_its_pairs():
    pods = fake_pods(10)
    first = expect.reachability_matrix(pods, pods, sample=7, seed=3)  # type: ignore[arg-type]
    again = expect.reachability_matrix(pods, pods, sample=7, seed=3)  # type: ignore[arg-type]
    assert len(first.cells) == 7 and set(first.cells) == set(again.cells)
    assert all(s != t for s, t in first.cells)


def test_selectors_by_label_or_by_name():
    pods = fake_pods(5)
    assert [p.name for p in expect.select(pods, "app=web")] == ["p1", "p3"]
    assert [p.name for p in expect.select(pods, "app!=web")] == ["p0", "p2", "p4"]
    assert [p.name for p in expect.select(pods, "p0,p4")] == ["p0", "p4"]
    assert [p.name for p in expect.select(pods, "p[12]*")] == ["p1", "p2"]
    assert expect.select(pods, None) == pods


def test_a_plain_callable_probe_still_runs_pair_by_pair():
    pods = fake_pods(3)
    matrix = expect.reachability_matrix(pods, pods, lambda s, t: expect.BatchProbe("tcp", 80)(s, t))  # type: ignore[arg-type]
    assert len(matrix.cells) == 6 and all(cell.ok for cell in matrix.cells.values())
    assert [p.execs for p in pods] == [2, 2, 2]
