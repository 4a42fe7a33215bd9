"""A lab's machines: its underlay networks and node containers, created,
stopped on purpose and brought back as recorded.

A stopped lab keeps its containers, networks and state. Its node containers
come back with the same addresses (they are fixed in the engine's endpoint
config), but with fresh network namespaces: each node's whole script runs
again (knobs, CNI, backend, pods), then the lab re-applies its layers and
the faults still active. An engine restart leaves a lab exactly like `stop`
does (containers stopped), so `start` is also how a lab survives one.
"""

from __future__ import annotations

import time
from ipaddress import IPv4Address

from labkit.concurrency import parallel
from labkit.core.cluster import Cluster
from labkit.errors import LabkitError
from labkit.topology.networks import networks_of

NODE_RETURN_SECONDS = 30.0
STOPPED_FLAG = "stopped"  # in the lab's state: stopped on purpose (`labkit stop`)


def create_networks(cluster: Cluster) -> None:
    for network, subnet in cluster.addresses.underlay_subnets.items():
        spec = cluster.topology.networks[network]  # mtu None: the engine's default
        cluster.runtime.create_network(
            cluster.name, network, subnet, cluster.owner, mtu=spec.mtu, driver=spec.driver
        )


def _node_spec(cluster: Cluster, node: str) -> tuple[str, dict[str, IPv4Address]]:
    """The node's image and its address on each of its networks."""
    networks = {
        net: cluster.addresses.node_ips[node][net] for net in networks_of(cluster.topology, node)
    }
    return cluster.topology.nodes[node].image or cluster.image, networks


def build_nodes(cluster: Cluster, scripts: dict[str, str]) -> tuple[float, list[str]]:
    """Each node started, its script run as it boots, while other nodes still start:
    the engine creates containers mostly one at a time, so the scripts fill the
    wait (issue 14). A node's script names its peers by their planned addresses,
    so it needs none of them running. Returns when the last node was started and
    each script's output."""
    started: list[float] = []

    def mark_started() -> None:
        started.append(time.perf_counter())

    def build(node: str) -> str:
        image, networks = _node_spec(cluster, node)
        lab, runtime = cluster.name, cluster.runtime
        if node not in scripts:
            runtime.create_node(lab, node, image, networks, cluster.owner)
            mark_started()
            return ""
        return runtime.create_node_running(
            lab, node, image, networks, cluster.owner, script=scripts[node], on_start=mark_started
        ).stdout

    outputs = parallel(build, cluster.topology.nodes)
    return max(started, default=time.perf_counter()), outputs


def running_nodes(cluster: Cluster) -> list[str]:
    """Nodes whose containers run now (not stopped by a fault, `stop` or the engine)."""
    return [n for n in cluster.topology.nodes if cluster.runtime.is_running(cluster.container(n))]


def stop_lab(cluster: Cluster) -> list[str]:
    """Stop every running node container; the nodes stopped."""
    nodes = running_nodes(cluster)
    parallel(lambda node: cluster.runtime.stop_node(cluster.container(node), timeout=1), nodes)
    cluster.state[STOPPED_FLAG] = True
    cluster.save()
    return nodes


def rebuild_node(cluster: Cluster, node: str) -> None:
    """Start a node's container, wait until it answers, run its whole script."""
    from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed  # at use

    cluster.runtime.start_node(cluster.container(node))
    for attempt in Retrying(
        stop=stop_after_delay(NODE_RETURN_SECONDS),
        wait=wait_fixed(0.2),
        retry=retry_if_exception_type(LabkitError),
        reraise=True,
    ):
        with attempt:
            cluster.node(node).exec("true")
    cluster.node(node).exec(cluster.node_script(node))


def start_lab(cluster: Cluster) -> list[str]:
    """Rebuild every node that is down but not stopped by a fault; the nodes rebuilt.
    The caller re-applies the layers and the faults."""
    running = set(running_nodes(cluster))
    nodes = [
        n for n in cluster.topology.nodes if n not in running and n not in cluster.stopped_nodes()
    ]
    parallel(lambda node: rebuild_node(cluster, node), nodes)
    cluster.state.pop(STOPPED_FLAG, None)
    return nodes


def remove_late_arrivals(cluster: Cluster, *, settle: float = 0.3, rounds: int = 10) -> None:
    """After an interrupted up: a request the interrupt cut short (a network or a
    container being created) still completes on the engine, after the first
    removal looked. Remove again until nothing of the lab shows up for `settle` s."""
    for _ in range(rounds):
        time.sleep(settle)
        if not cluster.runtime.labelled(cluster.name):
            return
        cluster.runtime.remove_lab(cluster.name)
