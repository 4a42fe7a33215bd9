"""Assertions over whole sets of paths; on failure they print the whole matrix.

    expect.reachable(lab.pods(), lab.pods())
    expect.unreachable([client], [remote], probe=expect.tcp(8080))

Probes made by `icmp`, `tcp` and `udp` are batched: one exec per source probes
all its targets, sources in parallel, so a 200-pod matrix takes seconds:

    matrix = expect.reachability_matrix(
        expect.select(lab.pods(), "app=web"), lab.pods(), sample=500, progress=print_progress
    )
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, TypeVar

from labkit.concurrency import parallel
from labkit.core import probes
from labkit.core.endpoint import Endpoint, Target
from labkit.core.eventually import eventually

Probe = Callable[[Endpoint, Target], Any]  # a result with `.ok` and `str()`
Progress = Callable[[int, int], None]  # (pairs done, pairs in all)
T = TypeVar("T")


@dataclass(frozen=True)
class BatchProbe:
    """A probe that can also run as one job of a batch (one exec per source)."""

    kind: str  # "tcp" | "udp" | "icmp"
    port: int = 0
    timeout: float = 2.0
    payload: str = ""
    count: int = 1  # echo requests (icmp)

    def job(self, target: Target) -> probes.Job:
        address = probes.address_of(target)
        return probes.Job(self.kind, address, self.port, self.timeout, self.payload, self.count)

    def __call__(self, source: Endpoint, target: Target) -> Any:
        return probes.probe_many(source, [self.job(target)])[0]


def icmp(count: int = 2, **options: Any) -> Probe:
    """`count` ICMP echoes, ok when any is answered (as ping); batched (one raw socket
    per source, an echo sent again until answered or `timeout`) unless ping's options
    are asked for."""
    if set(options) <= {"timeout"}:
        return BatchProbe("icmp", timeout=float(options.get("timeout", 1.0)), count=count)
    return lambda source, target: probes.ping(source, target, count=count, **options)


def tcp(port: int, *, timeout: float = 2.0, payload: str = "") -> Probe:
    return BatchProbe("tcp", port, timeout, payload)


def udp(port: int, *, timeout: float = 2.0, payload: str = "ping") -> Probe:
    return BatchProbe("udp", port, timeout, payload)


def http(port: int = 8080, path: str = "/", **options: Any) -> Probe:
    return lambda source, target: probes.http_get(source, target, port, path, **options)


@dataclass
class Matrix:
    """The result of a probe from each source to each target."""

    sources: list[str]
    targets: list[str]
    cells: dict[tuple[str, str], Any]

    def ok(self, source: str, target: str) -> bool:
        return bool(self.cells[(source, target)].ok)

    def counts(self) -> dict[str, int]:
        """How many paths ended each way (ok, denied, refused, timeout, ...)."""
        found: dict[str, int] = {}
        for cell in self.cells.values():
            status = str(getattr(cell, "status", "ok" if cell.ok else "error"))
            found[status] = found.get(status, 0) + 1
        return found

    def failed(self) -> list[str]:
        """One line per path that failed: too many pods for a table still read well."""
        return [f"{s} -> {t}: {cell}" for (s, t), cell in sorted(self.cells.items()) if not cell.ok]

    def render(self, expected: Callable[[str, str], bool] | None = None) -> str:
        """A text table; a cell that differs from `expected` is marked with `!`."""
        width = max([len(t) for t in self.targets] + [14])
        head = " " * (max(map(len, self.sources)) + 2)
        lines = [head + "  ".join(t.ljust(width) for t in self.targets)]
        for source in self.sources:
            row = []
            for target in self.targets:
                cell = self.cells.get((source, target))
                if cell is None:
                    row.append("-".ljust(width))
                    continue
                mark = "ok" if cell.ok else str(getattr(cell, "status", "FAIL")).upper()
                if cell.ok and isinstance(cell, probes.PingResult) and cell.rtt_avg is not None:
                    mark = f"ok {cell.rtt_avg:.2f}ms"
                elif cell.ok and isinstance(cell, probes.TcpResult):
                    mark = f"ok {cell.ms:.2f}ms"
                wrong = expected is not None and expected(source, target) != cell.ok
                row.append((("!" + mark) if wrong else mark).ljust(width))
            lines.append(source.ljust(len(head)) + "  ".join(row))
        return "\n".join(lines)

    def misses(self, expected: Callable[[str, str], bool]) -> list[str]:
        return [
            f"{s} -> {t}: expected {'reachable' if expected(s, t) else 'unreachable'}, got {cell}"
            for (s, t), cell in self.cells.items()
            if expected(s, t) != cell.ok
        ]


def select(endpoints: Sequence[T], selector: str | None) -> list[T]:
    """The endpoints a selector names; None or "" selects all.

    `key=value,key!=value` (every term must hold) matches labels, as
    `kubectl -l` does; otherwise the selector is comma-separated names or
    globs (`x-*`), any of which may match.
    """
    if not selector:
        return list(endpoints)
    terms = [term.strip() for term in selector.split(",") if term.strip()]
    if any("=" in term for term in terms):
        return [e for e in endpoints if _labels_hold(getattr(e, "labels", {}), terms)]
    return [e for e in endpoints if any(fnmatchcase(str(e), term) for term in terms)]


def _labels_hold(labels: dict[str, str], terms: list[str]) -> bool:
    for term in terms:
        negated = "!=" in term
        key, _, value = term.replace("!=", "=", 1).partition("=")
        if (labels.get(key.strip()) == value.strip()) == negated:
            return False
    return True


def pairs_to_probe(
    sources: Sequence[Endpoint],
    targets: Sequence[Target],
    *,
    skip_self: bool = True,
    sample: int | None = None,
    seed: int = 0,
) -> list[tuple[Endpoint, Target]]:
    """Every (source, target) pair, or `sample` of them drawn at random (seeded: repeatable)."""
    pairs = [
        (s, t)
        for s in sources
        for t in targets
        if not (skip_self and probes.label_of(t) == probes.label_of(s))
    ]
    if sample is not None and sample < len(pairs):
        pairs = random.Random(seed).sample(pairs, sample)
    return pairs


def reachability_matrix(
    sources: Sequence[Endpoint],
    targets: Sequence[Target],
    probe: Probe | None = None,
    *,
    skip_self: bool = True,
    sample: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    workers: int = 12,
) -> Matrix:
    """Run `probe` (ping by default) from every source to every target.

    A BatchProbe (`icmp()`, `tcp()`, `udp()`) costs one exec per node (its pods
    all probe at once, each from its namespace), 8 nodes at a time; any other
    probe runs pair by pair in `workers` threads.
    `sample` probes that many random pairs (seeded by `seed`); `progress` is
    called with (pairs done, pairs in all) as sources finish.
    """

    probe = probe or icmp()
    pairs = pairs_to_probe(sources, targets, skip_self=skip_self, sample=sample, seed=seed)
    counter = _Counter(len(pairs), progress)
    cells: dict[tuple[str, str], Any] = {}
    if isinstance(probe, BatchProbe):
        by_source: dict[str, tuple[Endpoint, list[Target]]] = {}
        for source, target in pairs:
            by_source.setdefault(probes.label_of(source), (source, []))[1].append(target)
        groups = list(by_source.values())
        outcome = probes.probe_from_each(
            [(s, [probe.job(t) for t in ts]) for s, ts in groups], done=counter.add
        )
        for (source, wanted), results in zip(groups, outcome, strict=True):
            name = probes.label_of(source)
            cells.update(
                {(name, probes.label_of(t)): r for t, r in zip(wanted, results, strict=True)}
            )
    else:

        def run_pair(pair: tuple[Endpoint, Target]) -> Any:
            result = probe(pair[0], pair[1])
            counter.add(1)
            return result

        results = parallel(run_pair, pairs, workers=workers)
        cells = {
            (probes.label_of(s), probes.label_of(t)): r
            for (s, t), r in zip(pairs, results, strict=True)
        }
    return Matrix(
        [probes.label_of(s) for s in sources], [probes.label_of(t) for t in targets], cells
    )


class _Counter:
    """Pairs done so far, reported to a progress callback from any thread."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total, self.done, self.progress = total, 0, progress
        self.lock = threading.Lock()

    def add(self, count: int) -> None:
        with self.lock:
            self.done += count
            if self.progress is not None:
                self.progress(self.done, self.total)


def _check(matrix: Matrix, expected: Callable[[str, str], bool], what: str) -> Matrix:
    misses = matrix.misses(expected)
    if misses:
        raise AssertionError(
            f"{len(misses)} path(s) not {what} as expected:\n  "
            + "\n  ".join(misses)
            + "\n\n"
            + matrix.render(expected)
        )
    return matrix


def reachable(
    sources: Sequence[Endpoint],
    targets: Sequence[Target],
    probe: Probe | None = None,
    *,
    within: float = 0.0,
) -> Matrix:
    """Every source reaches every target (retrying for `within` seconds to converge)."""
    return _eventually_matrix(sources, targets, probe, lambda s, t: True, "reachable", within)


def unreachable(
    sources: Sequence[Endpoint],
    targets: Sequence[Target],
    probe: Probe | None = None,
    *,
    within: float = 0.0,
) -> Matrix:
    """No source reaches any target."""
    return _eventually_matrix(sources, targets, probe, lambda s, t: False, "unreachable", within)


def matches(
    sources: Sequence[Endpoint],
    targets: Sequence[Target],
    expected: Callable[[str, str], bool],
    probe: Probe | None = None,
    *,
    within: float = 0.0,
) -> Matrix:
    """The matrix equals a truth table: `expected(source_name, target_name)`."""
    return _eventually_matrix(sources, targets, probe, expected, "as the truth table says", within)


def _eventually_matrix(
    sources: Sequence[Endpoint],
    targets: Sequence[Target],
    probe: Probe | None,
    expected: Callable[[str, str], bool],
    what: str,
    within: float,
) -> Matrix:
    if within <= 0:
        return _check(reachability_matrix(sources, targets, probe), expected, what)
    return eventually(
        lambda: _check(reachability_matrix(sources, targets, probe), expected, what),
        within=within,
        what=f"paths {what}",
    )
