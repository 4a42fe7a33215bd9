"""The cluster DNS layer: records for the kube-dns pods, resolv.conf for changed pods.

The kube-dns pods and Service are part of the topology (dataplane/kube_dns.py,
added when the lab comes up), so the services layer programs the DNS
ClusterIP like any Service. This layer, after it, writes the records the
services and their ready endpoints make onto the nodes that run DNS pods.
Each pod's resolv.conf, as the kubelet writes it, comes with the node's script
(before the pod starts), and from here for a pod added or changed later. It
follows pod and service changes, writing the records only when they changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address
from typing import Any

from labkit.concurrency import parallel
from labkit.core.cluster import Cluster
from labkit.core.eventually import eventually
from labkit.core.handles import PodHandle
from labkit.dataplane import dns, kube_dns
from labkit.dataplane.dns_records import Record, service_records
from labkit.layers.base import BaseLayer
from labkit.layers.service_state import build_ready, ready_pods, vips
from labkit.topology.services_alloc import dns_vip, service_endpoints

STATE_KEY = "cluster_dns"


LAYER_NAME = "cluster-dns"
SERVED = "labkit-dns-served"  # a line of a build part's output: this pod answers
SERVE_TRIES = 300  # x 50 ms: as long as `wait_served` waits


def records(cluster: Cluster, ready: set[str] | None = None) -> list[Record]:
    """Every record the cluster DNS serves now (ready endpoints as the services layer
    saw them, or the `ready` given)."""
    topology = cluster.topology
    ready = ready_pods(cluster) if ready is None else ready
    endpoints = {
        name: service_endpoints(service, topology.pods, cluster.addresses.pod_ips, ready)
        for name, service in topology.services.items()
    }
    return service_records(topology, vips(cluster), endpoints)


def dns_nodes(cluster: Cluster) -> list[str]:
    """The running nodes with a DNS pod: they hold the records."""
    down = cluster.stopped_nodes()
    found = {
        cluster.topology.pods[p].node for p in kube_dns.pod_names() if p in cluster.topology.pods
    }
    return sorted(found - down)


def _resolv_lines(cluster: Cluster, pods: Sequence[str]) -> list[str]:
    namespaces = {p: cluster.topology.pods[p].namespace for p in pods if p in cluster.topology.pods}
    return dns.pod_resolv_lines(dns_vip(cluster.topology.cluster), namespaces)


def _digest(found: list[Record]) -> str:
    return hashlib.sha256(repr(found).encode()).hexdigest()[:16]


def follow(
    cluster: Cluster, *, force: bool = False, also: Mapping[str, list[str]] | None = None
) -> bool:
    """Rewrite the records on the DNS nodes when they changed (or `force`); True if written.
    `also`: lines per node sent in the same exec, whether or not the records changed
    (the pods' resolv.conf files): one exec round in all."""
    if not kube_dns.present(cluster.topology):
        return False
    work = {node: list(extra) for node, extra in (also or {}).items() if extra}
    state = cluster.slice(STATE_KEY)
    found = records(cluster)
    digest = _digest(found)
    written = force or state.get("digest") != digest
    if written:
        lines = kube_dns.records_update_lines(found)
        for node in dns_nodes(cluster):
            work[node] = [*work.get(node, []), *lines]
    parallel(lambda node: cluster.node(node).exec("\n".join(work[node])), sorted(work))
    if written:
        state["digest"] = digest
        state["records"] = len(found)
        wait_served(cluster)
    return written


def _local_dns_pods(cluster: Cluster, node: str) -> list[str]:
    return [p for p in kube_dns.pod_names() if p in cluster.pods_on(node)]


def _query(cluster: Cluster, pod_ip: IPv4Address) -> tuple[str, str]:
    """A question a DNS pod answers once it serves the records (the DNS Service's own
    name), and the answer it must give."""
    name = dns.service_name(kube_dns.SERVICE, kube_dns.NAMESPACE)
    return f"dig +short +time=1 +tries=1 @{pod_ip} {name} A", str(dns_vip(cluster.topology.cluster))


def _served_lines(cluster: Cluster, pod: str) -> list[str]:
    """Until the pod's dnsmasq answers (a shell loop, as long as `wait_served` waits);
    then a SERVED line. It starts a moment after its config is there."""
    query, expected = _query(cluster, cluster.addresses.pod_ips[pod])
    ask = f"{query} 2>/dev/null | grep -qxF {expected}"
    return [
        f"n=0; until {ask}; do n=$((n + 1)); [ $n -lt {SERVE_TRIES} ] || break; sleep 0.05; done",
        f"[ $n -ge {SERVE_TRIES} ] || echo {SERVED} {pod}",
    ]


def build_files(cluster: Cluster) -> dict[str, str]:
    """On each DNS node at up, before its pods start: the records (every pod taken as
    ready, as the Services are), so each DNS pod starts dnsmasq with them at once."""
    lines = kube_dns.records_update_lines(records(cluster, build_ready(cluster)))
    return {node: "\n".join(lines) for node in dns_nodes(cluster)}


def build_parts(cluster: Cluster) -> dict[str, str]:
    """At the end of each DNS node's script: a wait until its DNS pods answer, so the
    first apply has nothing to do."""
    return {
        node: "\n".join(
            s for pod in _local_dns_pods(cluster, node) for s in _served_lines(cluster, pod)
        )
        for node in dns_nodes(cluster)
    }


def _take_built(cluster: Cluster) -> bool:
    """The records the build files wrote, if every DNS node ran its part and its pods
    answer: the state says so, and `follow` writes again only what changed since."""
    nodes = dns_nodes(cluster)
    built = cluster.built_parts(LAYER_NAME, nodes)
    if built is None:
        return False
    for node, output in built.items():
        served = {line.split()[-1] for line in output.splitlines() if line.startswith(SERVED)}
        if not set(_local_dns_pods(cluster, node)) <= served:
            return False
    found = records(cluster, build_ready(cluster))
    state = cluster.slice(STATE_KEY)
    state["digest"], state["records"] = _digest(found), len(found)
    return True


def wait_served(cluster: Cluster, within: float = 15.0) -> None:
    """Until every running DNS pod answers with the records just written: its dnsmasq
    starts (or restarts) a moment after them, and the Service sends to either pod."""
    down = cluster.stopped_nodes()
    pods = [
        cluster.pod(pod)
        for pod in kube_dns.pod_names()
        if pod in cluster.topology.pods and cluster.topology.pods[pod].node not in down
    ]

    def answers(pod: PodHandle) -> None:
        query, expected = _query(cluster, pod.ip)
        got = pod.node.exec(query, check=False, timeout=5).stdout.split()
        assert expected in got, f"{pod.name} answers {got or 'nothing'} for {query.split()[-2]}"

    # A dnsmasq not listening yet refuses at once: ask again soon (it starts in ~0.1 s).
    parallel(
        lambda pod: eventually(lambda: answers(pod), within=within, every=0.05, what="cluster DNS"),
        pods,
    )


def apply(cluster: Cluster) -> None:
    """The records on the DNS nodes (each node's script wrote its pods' resolv.conf
    before they started: dataplane/nodes.py). At up the node scripts wrote them:
    written again only if they differ now (a pod the services found not ready)."""
    follow(cluster, force=not _take_built(cluster))


def sync(cluster: Cluster, changed_pods: Sequence[str]) -> None:
    """A changed pod: its resolv.conf (or, gone, its netns files); the records if they changed."""
    topology = cluster.topology
    down = cluster.stopped_nodes()
    by_node: dict[str, list[str]] = {}
    for pod in changed_pods:
        if pod in topology.pods and topology.pods[pod].node not in down:
            by_node.setdefault(topology.pods[pod].node, []).append(pod)
    gone = dns.forget_pods_lines(p for p in changed_pods if p not in topology.pods)
    members = [n for n in cluster.addresses.pod_subnets if n not in down]
    follow(cluster, also={n: [*gone, *_resolv_lines(cluster, by_node.get(n, []))] for n in members})


class ClusterDnsLayer(BaseLayer):
    name = LAYER_NAME

    def wanted(self, cluster: Cluster) -> bool:
        return kube_dns.present(cluster.topology)

    def build_files(self, cluster: Cluster) -> dict[str, str]:
        return build_files(cluster)

    def build_parts(self, cluster: Cluster) -> dict[str, str]:
        return build_parts(cluster)

    def apply(self, cluster: Cluster) -> None:
        apply(cluster)

    def sync(self, cluster: Cluster, changed_pods: Sequence[str]) -> None:
        sync(cluster, changed_pods)

    def services_changed(self, cluster: Cluster) -> None:
        follow(cluster)  # the records (also when a service went: its name must go)

    def describe(self, cluster: Cluster) -> dict[str, Any]:
        pods = [p for p in kube_dns.pod_names() if p in cluster.topology.pods]
        return {
            "cluster_dns": {
                "service": f"{kube_dns.NAMESPACE}/{kube_dns.SERVICE}",
                "cluster_ip": str(dns_vip(cluster.topology.cluster)),
                "pods": {p: cluster.topology.pods[p].node for p in pods},
                "ready": sorted(set(pods) & ready_pods(cluster)),
                "records": cluster.slice(STATE_KEY).get("records", 0),
            }
        }
