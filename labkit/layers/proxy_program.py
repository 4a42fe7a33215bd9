"""Programming the service proxy on nodes: one exec per node, all nodes in parallel.

A partial sync writes only what changed since the plan the nodes were last
programmed with; a node whose rules were changed by someone else (its digest
differs from the one recorded) gets a full sync instead. Timing is measured
from the start to the moment every node has committed its transaction.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from labkit.concurrency import parallel
from labkit.dataplane.kubeproxy import ProxyPlan
from labkit.dataplane.proxy_modes import Mode, SyncOutput, parse_sync_output, sync_script
from labkit.dataplane.script import parse_times, timed

if TYPE_CHECKING:
    from labkit.core.cluster import Cluster

RULES_DIR = "/var/lib/labkit/proxy"
INLINE_LIMIT = 100_000  # bytes: above this the payload is copied first (exec args are limited)


@dataclass
class NodeSync:
    node: str
    kind: str  # full | partial
    seconds: float
    digest: str
    drifted: bool = False
    stale: tuple[str, ...] = ()  # nftables: chains left flushed, to delete at the next sync


@dataclass
class SyncReport:
    kind: str  # full | partial (partial when every node could take the partial payload)
    seconds: float  # from the start until every node has committed
    nodes: dict[str, NodeSync] = field(default_factory=dict)

    @property
    def drifted(self) -> list[str]:
        return sorted(name for name, node in self.nodes.items() if node.drifted)

    @property
    def digests(self) -> dict[str, str]:
        return {name: node.digest for name, node in self.nodes.items()}

    @property
    def stale(self) -> dict[str, list[str]]:
        return {name: list(node.stale) for name, node in self.nodes.items()}

    def summary(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "seconds": round(self.seconds, 4),
            "per_node": {name: round(node.seconds, 4) for name, node in self.nodes.items()},
            "restored_on": self.drifted,
        }


def _path(mode: Mode) -> str:
    return f"{RULES_DIR}/rules.{mode.name}"


def _run(
    cluster: Cluster,
    node: str,
    mode: Mode,
    payload: str,
    expected_digest: str | None,
    conntrack: Sequence[str],
    before: Sequence[str],
    verify: bool = True,
) -> SyncOutput:
    handle = cluster.node(node)
    path = _path(mode)
    inline = len(payload) + sum(map(len, before)) < INLINE_LIMIT
    if not inline:
        cluster.runtime.put_file(handle.container, path, payload)
    script = sync_script(
        mode,
        payload=payload if inline else None,
        path=path,
        expected_digest=expected_digest,
        conntrack=conntrack,
        before=[f"mkdir -p {RULES_DIR}", *before],
        record_digest=verify,
    )
    return parse_sync_output(handle.exec(script).stdout)


BUILD_STEP = "proxy sync"  # the build part's own write, timed as the node script's steps are


def build_script(mode: Mode, plan: ProxyPlan, before: Sequence[str]) -> str:
    """A fresh node's full sync as a part of its script at up (the rules inline)."""
    body = sync_script(
        mode,
        payload=mode.render_full(plan),
        path=_path(mode),
        expected_digest=None,
        before=[f"mkdir -p {RULES_DIR}", *before],
        fresh=True,
    )
    return timed(BUILD_STEP, body)


def built_report(outputs: Mapping[str, str]) -> SyncReport:
    """What the build parts of `build_script` did, node by node, as a SyncReport."""
    nodes = {}
    for node, output in outputs.items():
        seconds = parse_times(output).get(BUILD_STEP, 0.0)
        nodes[node] = NodeSync(node, "full", seconds, parse_sync_output(output).digest)
    return SyncReport("full", max((n.seconds for n in nodes.values()), default=0.0), nodes)


def _existing_chains(cluster: Cluster, node: str, mode: Mode) -> list[str]:
    return list(parse_sync_output(cluster.node(node).exec(mode.chains_command()).stdout).chains)


Plans = ProxyPlan | Mapping[str, ProxyPlan]  # one plan for every node, or one per node


def _per_node(plans: Plans | None, nodes: Sequence[str]) -> dict[str, ProxyPlan]:
    if plans is None:
        return {}
    if isinstance(plans, ProxyPlan):
        return dict.fromkeys(nodes, plans)
    return {node: plans[node] for node in nodes if node in plans}


def program(
    cluster: Cluster,
    nodes: Sequence[str],
    mode: Mode,
    old: Plans | None,
    new: Plans,
    digests: Mapping[str, str],
    *,
    conntrack: Mapping[str, Sequence[str]] | Sequence[str] = (),
    before: Mapping[str, Sequence[str]] | None = None,
    stale: Mapping[str, Sequence[str]] | None = None,
    fresh: bool = False,
    verify: bool = True,
) -> SyncReport:
    """Bring each of `nodes` from its `old` plan to its `new` one: partial where the
    node is as labkit left it (and has an old plan), full otherwise.

    Plans are per node (Local traffic policies, node port addresses); one plan
    stands for every node. `stale`: per node, the chains the previous sync left
    flushed (nftables deletes them now). `fresh` says the nodes hold none of
    labkit's rules yet (a new cluster), so a full sync needs no look at what is
    there first. `verify=False` skips the drift check and the digest (the
    bench's kube-proxy-like write-only sync): a partial sync then needs only an
    old plan.
    """

    before, stale = before or {}, stale or {}
    olds, news = _per_node(old, nodes), _per_node(new, nodes)
    started = time.perf_counter()
    # Renders shared by nodes with the very same plans (the bench: one plan everywhere).
    partial_cache: dict[tuple[int, int, tuple[str, ...]], str] = {}
    full_cache: dict[tuple[int, tuple[str, ...], tuple[str, ...]], str] = {}

    def partial_payload(node: str) -> str | None:
        if node not in olds:
            return None
        gone = tuple(sorted(stale.get(node, ())))
        key = (id(olds[node]), id(news[node]), gone)
        if key not in partial_cache:
            partial_cache[key] = mode.render_partial(olds[node], news[node], gone)
        return partial_cache[key]

    def full_payload(node: str, existing: Sequence[str]) -> str:
        key = (id(news[node]), tuple(sorted(existing)), tuple(sorted(stale.get(node, ()))))
        if key not in full_cache:
            full_cache[key] = mode.render_full(news[node], existing, key[2])
        return full_cache[key]

    def flushes(node: str) -> Sequence[str]:
        return conntrack.get(node, ()) if isinstance(conntrack, Mapping) else conntrack

    def on_node(node: str) -> NodeSync:
        node_started = time.perf_counter()
        extra, ct = list(before.get(node, ())), flushes(node)
        partial = partial_payload(node)
        if partial is not None:
            left = tuple(sorted(mode.stale_after_partial(olds[node], news[node])))
            if not verify:
                _run(cluster, node, mode, partial, None, ct, extra, verify=False)
                return NodeSync(node, "partial", time.perf_counter() - node_started, "", stale=left)
            if node in digests:
                out = _run(cluster, node, mode, partial, digests[node], ct, extra)
                if not out.drift:
                    took = time.perf_counter() - node_started
                    return NodeSync(node, "partial", took, out.digest, stale=left)
                existing: Sequence[str] = out.chains
                drifted = True
            else:
                existing, drifted = _existing_chains(cluster, node, mode), False
        else:
            existing = () if fresh else _existing_chains(cluster, node, mode)
            drifted = False
        payload = full_payload(node, existing)
        out = _run(cluster, node, mode, payload, None, ct, extra, verify=verify)
        # What the full sync flushed now; the stale chains of before it deleted.
        left = tuple(sorted(mode.stale_after_full(news[node], existing) - set(stale.get(node, ()))))
        took = time.perf_counter() - node_started
        return NodeSync(node, "full", took, out.digest, drifted, stale=left)

    results = parallel(on_node, nodes)
    seconds = time.perf_counter() - started
    kind = "partial" if results and all(r.kind == "partial" for r in results) else "full"
    return SyncReport(kind, seconds, {r.node: r for r in results})


def record_digests(cluster: Cluster, nodes: Sequence[str], mode: Mode) -> dict[str, str]:
    """The digest of the rules each node holds now (what the next drift check compares to)."""

    def on_node(node: str) -> str:
        return cluster.node(node).exec(mode.digest_command()).stdout.split()[0]

    return dict(zip(nodes, parallel(on_node, nodes), strict=True))
