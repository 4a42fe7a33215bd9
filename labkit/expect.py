"""Assertions over whole sets of paths; on failure they print the whole matrix.

    expect.reachable(lab.pods(), lab.pods())
    expect.unreachable([client], [remote], probe=expect.tcp(8080))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from labkit.concurrency import parallel
from labkit.core import probes
from labkit.core.endpoint import Endpoint, Target
from labkit.core.eventually import eventually

Probe = Callable[[Endpoint, Target], Any]  # a result with `.ok` and `str()`


def icmp(count: int = 2, **options: Any) -> Probe:
    return lambda source, target: probes.ping(source, target, count=count, **options)


def tcp(port: int, **options: Any) -> Probe:
    return lambda source, target: probes.tcp_connect(source, target, port, **options)


def udp(port: int, **options: Any) -> Probe:
    return lambda source, target: probes.udp_request(source, target, port, **options)


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
                mark = "ok" if cell.ok else "FAIL"
                if cell.ok and isinstance(cell, probes.PingResult) and cell.rtt_avg is not None:
                    mark = f"ok {cell.rtt_avg:.2f}ms"
                wrong = expected is not None and expected(source, target) != cell.ok
                row.append(((("!" + mark) if wrong else mark)).ljust(width))
            lines.append(source.ljust(len(head)) + "  ".join(row))
        return "\n".join(lines)

    def misses(self, expected: Callable[[str, str], bool]) -> list[str]:
        return [
            f"{s} -> {t}: expected {'reachable' if expected(s, t) else 'unreachable'}, got {cell}"
            for (s, t), cell in self.cells.items()
            if expected(s, t) != cell.ok
        ]


def reachability_matrix(
    sources: Sequence[Endpoint], targets: Sequence[Target], probe: Probe | None = None, *, skip_self: bool = True
) -> Matrix:
    """Run `probe` (ping by default) from every source to every target, in parallel."""
    probe = probe or icmp()
    pairs = [
        (s, t)
        for s in sources
        for t in targets
        if not (skip_self and probes.label_of(t) == probes.label_of(s))
    ]
    results = parallel(lambda pair: probe(pair[0], pair[1]), pairs, workers=12)
    cells = {(probes.label_of(s), probes.label_of(t)): r for (s, t), r in zip(pairs, results, strict=True)}
    return Matrix(
        [probes.label_of(s) for s in sources], [probes.label_of(t) for t in targets], cells
    )


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
    sources: Sequence[Endpoint], targets: Sequence[Target], probe: Probe | None = None, *, within: float = 0.0
) -> Matrix:
    """Every source reaches every target (retrying for `within` seconds to converge)."""
    return _eventually_matrix(sources, targets, probe, lambda s, t: True, "reachable", within)


def unreachable(
    sources: Sequence[Endpoint], targets: Sequence[Target], probe: Probe | None = None, *, within: float = 0.0
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
