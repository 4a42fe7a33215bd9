"""LoadBalancer addresses announced as MetalLB does: L2 (one node answers ARP, a
speaker on every node elects the owner and takes over from a stopped one) or
BGP (BIRD on every announcing node, eBGP to the router node, ECMP there).

The Service layer assigns the addresses and programs kube-proxy's rules for
them; this layer only makes the underlay send the packets to the nodes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from ipaddress import IPv4Address
from typing import Any

from labkit.concurrency import parallel
from labkit.core.cluster import Cluster
from labkit.core.eventually import eventually
from labkit.dataplane import lb_announce, lb_bgp
from labkit.dataplane.agents import source
from labkit.dataplane.lb_announce import Announcement
from labkit.layers.base import BaseLayer
from labkit.layers.service_state import lb_ips, stored_plans
from labkit.runtime import features

STATE_KEY = "load_balancer"


def _members(cluster: Cluster) -> list[str]:
    down = cluster.stopped_nodes()
    return [node for node in cluster.addresses.pod_subnets if node not in down]


def _found(cluster: Cluster) -> list[Announcement]:
    plans = stored_plans(cluster)
    return lb_announce.announcements(
        {n: plans[n] for n in _members(cluster) if n in plans}, lb_ips(cluster)
    )


def _node_configs(cluster: Cluster, found: Sequence[Announcement]) -> dict[str, str]:
    pool = cluster.topology.cluster.load_balancer
    assert pool is not None
    members = _members(cluster)
    if pool.mode == "l2":
        peers = {n: cluster.addresses.node_ip(n) for n in cluster.addresses.pod_subnets}
        return {
            n: lb_announce.speaker_config(n, cluster.addresses.node_ip(n), peers, found)
            for n in members
        }
    assert pool.peer is not None
    router = cluster.addresses.node_ip(pool.peer)
    return {
        n: lb_bgp.speaker_config(
            cluster.addresses.node_ip(n),
            router,
            pool.peer_asn,
            [a.ip for a in found if n in a.candidates],
            cluster.topology.cluster.bgp.hold_time,
            cluster.topology.cluster.bgp.keepalive,
        )
        for n in members
    }


def _deploy(cluster: Cluster, node: str, config: str, mode: str) -> None:
    handle = cluster.node(node)
    if mode == "l2":
        cluster.runtime.put_file(handle.container, lb_announce.SPEAKER_CONFIG, config)
        handle.exec(lb_announce.speaker_start())
    else:
        handle.exec(lb_bgp.deploy_script(config))


def apply_announcements(cluster: Cluster, *, fresh: bool) -> None:
    """Write each node's speaker configuration where it changed (all of it when `fresh`)."""
    pool = cluster.topology.cluster.load_balancer
    assert pool is not None
    state = cluster.slice(STATE_KEY)
    known: dict[str, str] = {} if fresh else dict(state.get("configs", {}))
    configs = _node_configs(cluster, _found(cluster))
    changed = [n for n, text in configs.items() if known.get(n) != text]
    if fresh and pool.mode == "l2":
        program = source("lb_speaker")
        for node in changed:
            cluster.runtime.put_file(
                cluster.container(node), lb_announce.SPEAKER_PROGRAM, program, 0o755
            )
    if fresh and pool.mode == "bgp":
        assert pool.peer is not None
        nodes = {n: cluster.addresses.node_ip(n) for n in cluster.addresses.pod_subnets}
        settings = cluster.topology.cluster.bgp
        router = lb_bgp.router_config(
            cluster.addresses.node_ip(pool.peer), pool.peer_asn, nodes,
            settings.hold_time, settings.keepalive,
        )  # fmt: skip
        cluster.node(pool.peer).exec(lb_bgp.deploy_script(router, router=True))
    parallel(lambda n: _deploy(cluster, n, configs[n], pool.mode), changed)
    state["configs"] = {**known, **configs}
    if fresh and pool.mode == "l2":
        wait_elected(cluster)


def wait_elected(cluster: Cluster, within: float = 15.0) -> None:
    """Until every address is held by its elected node alone (the speakers have joined)."""
    found = _found(cluster)

    def agreed() -> None:
        announced = _announced_l2(cluster)
        for a in found:
            holders = sorted(n for n, ips in announced.items() if str(a.ip) in ips)
            owner = lb_announce.l2_owner(a.candidates, a.ip)
            assert holders == ([owner] if owner else []), f"{a.ip}: held by {holders}, not {owner}"

    eventually(agreed, within=within, every=0.3, what="the L2 speakers' election")


def _announced_l2(cluster: Cluster) -> dict[str, list[str]]:
    """What each running node's speaker says it announces now (a status not written
    within the last 3 s is a speaker's that is gone: nothing)."""

    def read(node: str) -> list[str]:
        command = f"cat {lb_announce.SPEAKER_STATUS}; echo; date +%s.%N"
        out = cluster.node(node).exec(command, check=False).stdout.splitlines()
        try:
            status, now = json.loads(out[0]), float(out[-1])
        except (ValueError, IndexError):
            return []
        return list(status["announced"]) if now - status.get("time", 0) < 3 else []

    members = _members(cluster)
    return dict(zip(members, parallel(read, members), strict=True))


def describe(cluster: Cluster) -> dict[str, Any]:
    pool = cluster.topology.cluster.load_balancer
    assert pool is not None
    found = _found(cluster)
    announced = _announced_l2(cluster) if pool.mode == "l2" else {}
    addresses = []
    for a in found:
        entry: dict[str, Any] = {
            "service": a.service,
            "ip": str(a.ip),
            "candidates": list(a.candidates),
        }
        if pool.mode == "l2":
            entry["elected"] = lb_announce.l2_owner(a.candidates, a.ip)
            entry["announced_by"] = sorted(n for n, ips in announced.items() if str(a.ip) in ips)
        else:
            entry["announced_by"] = list(a.candidates)
        addresses.append(entry)
    return {"load_balancer": {"mode": pool.mode, "peer": pool.peer, "addresses": addresses}}


def owner(cluster: Cluster, ip: IPv4Address) -> list[str]:
    """The running nodes whose L2 speaker announces `ip` now (one, when all is well)."""
    return sorted(n for n, ips in _announced_l2(cluster).items() if str(ip) in ips)


class LoadBalancerLayer(BaseLayer):
    name = "load_balancer"

    def wanted(self, cluster: Cluster) -> bool:
        return cluster.topology.cluster.load_balancer is not None and any(
            s.type == "LoadBalancer" for s in cluster.topology.services.values()
        )

    def check(self, cluster: Cluster) -> None:
        pool = cluster.topology.cluster.load_balancer
        if pool is not None and pool.mode == "l2":
            features.require("packet_socket", "gratuitous ARP from the L2 speaker")

    def apply(self, cluster: Cluster) -> None:
        apply_announcements(cluster, fresh=True)

    def sync(self, cluster: Cluster, changed_pods: Sequence[str]) -> None:
        apply_announcements(cluster, fresh=False)

    def services_changed(self, cluster: Cluster) -> None:
        # Started on first need: the first LoadBalancer Service may come after `up`.
        apply_announcements(cluster, fresh="configs" not in cluster.slice(STATE_KEY))

    def describe(self, cluster: Cluster) -> dict[str, Any]:
        return describe(cluster)
