"""Socket probes in batches: many jobs from one source in one exec, many sources
of a node in one exec; the single TCP and UDP probes are batches of one."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from labkit.concurrency import parallel
from labkit.core.endpoint import Endpoint, Target
from labkit.core.probe_program import BATCH_PROBE
from labkit.core.probe_results import Job, TcpResult, address_of, result_of
from labkit.dataplane.script import q

if TYPE_CHECKING:
    from labkit.core.handles import NodeHandle, PodHandle


def probe_many(source: Endpoint, jobs: list[Job]) -> list[TcpResult]:
    """Run every job from `source` in one exec (TCP/UDP in threads, echoes on one
    raw socket); results in the order of `jobs`."""
    if not jobs:
        return []
    rows = [job.row() for job in jobs]
    command = f"python3 -c {q(BATCH_PROBE)} {q(json.dumps(rows))}"
    deadline = 2 * max(j.timeout for j in jobs) + 5 + len(jobs) * 0.05
    result = source.exec(command, check=False, timeout=deadline)
    try:
        data = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        failed = TcpResult(
            False, 0.0, f"probe failed: {result.output.strip()[-200:]}", status="error"
        )
        return [failed] * len(jobs)
    return [result_of(row) for row in data]


def probe_from_each(
    work: list[tuple[Endpoint, list[Job]]],
    done: Callable[[int], None] | None = None,
    nodes_at_once: int = 8,
) -> list[list[TcpResult]]:
    """Like `probe_many` for many sources, in one exec per node: the pods of a node
    (and the node itself) probe at once, each from its own namespace. Results in
    the order of `work`. Sources that are neither pods nor nodes run one by one.
    `done` is told how many jobs finished, as each exec ends."""
    from labkit.core.handles import NodeHandle, PodHandle  # they import this module

    by_node: dict[str, list[int]] = {}
    alone: list[int] = []
    for index, (source, _) in enumerate(work):
        if isinstance(source, PodHandle | NodeHandle):
            by_node.setdefault(source.node.name, []).append(index)
        else:
            alone.append(index)
    results: list[list[TcpResult]] = [[] for _ in work]

    def run_node(indices: list[int]) -> None:
        node = cast("NodeHandle | PodHandle", work[indices[0]][0]).node
        spec = {
            (work[i][0].name if isinstance(work[i][0], PodHandle) else ""): [
                job.row() for job in work[i][1]
            ]
            for i in indices
        }
        timeout = max([j.timeout for i in indices for j in work[i][1]] + [1.0])
        ran = node.exec(
            f"python3 -c {q(BATCH_PROBE)} {q(json.dumps(spec))}",
            check=False,
            timeout=2 * timeout + 15,
        )
        try:
            data = json.loads(ran.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            data = {}
        for i in indices:
            name = work[i][0].name if isinstance(work[i][0], PodHandle) else ""
            rows = data.get(name)
            if rows is None:
                failed = TcpResult(
                    False, 0.0, f"probe failed: {ran.output.strip()[-200:]}", status="error"
                )
                results[i] = [failed] * len(work[i][1])
            else:
                results[i] = [result_of(row) for row in rows]
        if done is not None:
            done(sum(len(work[i][1]) for i in indices))

    def run_alone(index: int) -> None:
        results[index] = probe_many(work[index][0], work[index][1])
        if done is not None:
            done(len(work[index][1]))

    parallel(run_node, list(by_node.values()), workers=nodes_at_once)
    parallel(run_alone, alone, workers=8)
    return results


def _socket_probe(
    source: Endpoint, kind: str, target: Target, port: int, timeout: float, payload: str
) -> TcpResult:
    return probe_many(source, [Job(kind, address_of(target), port, timeout, payload)])[0]


def tcp_connect(
    source: Endpoint, target: Target, port: int, *, timeout: float = 2.0, payload: str = ""
) -> TcpResult:
    """Open a TCP connection (and read the first reply when `payload` is sent)."""
    return _socket_probe(source, "tcp", target, port, timeout, payload)


def udp_request(
    source: Endpoint, target: Target, port: int, *, timeout: float = 2.0, payload: str = "ping"
) -> TcpResult:
    """Send one datagram and wait for one reply (the echo server names itself)."""
    return _socket_probe(source, "udp", target, port, timeout, payload)
