"""The pod network's convergence: `up` returns once the backend carries traffic.

vxlan and host-gw are ready when their scripts end (static entries). The udp
backend is ready once every socat holds its TUN device; bgp once every BIRD
session is Established and every node has every other node's pod subnet in
its kernel table. A backend that does not converge fails `up` with its own
state (`birdc show protocols`, the tunnels that have no process).

Also here, for tests and benchmarks: `bgp_protocols`, `bgp_routes`,
`wait_bgp_converged`, `stop_bird`, `start_bird`.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network
from typing import TYPE_CHECKING, Any

from labkit.concurrency import parallel
from labkit.core.eventually import eventually
from labkit.dataplane import backends, bgp, udp
from labkit.errors import TopologyError
from labkit.layers.base import BaseLayer
from labkit.runtime import features
from labkit.topology.model import Topology

if TYPE_CHECKING:
    from labkit.core.cluster import Cluster
    from labkit.core.handles import NodeHandle

BGP_CONVERGENCE_SECONDS = 30.0
UDP_ATTACH_SECONDS = 10.0
BIRD_ROUTES = "ip -4 route show proto bird"
_ROUTES_MARKER = "-- labkit: kernel routes --"


# -- bgp ------------------------------------------------------------------------


def bird_protocols_text(node: NodeHandle) -> str:
    """BIRD's own view of its sessions (or why birdc could not ask)."""
    return node.exec(bgp.birdc("show protocols"), check=False, timeout=10).output


def _sessions(protocols_text: str) -> dict[str, bgp.ProtocolState]:
    parsed = bgp.parse_protocols(protocols_text)
    return {name: state for name, state in parsed.items() if state.proto == "BGP"}


def bgp_protocols(node: NodeHandle) -> dict[str, bgp.ProtocolState]:
    """The BGP sessions of BIRD on `node`, by protocol name."""
    return _sessions(bird_protocols_text(node))


def _learned(node: NodeHandle, routes_output: str) -> set[IPv4Network]:
    own = node.cluster.addresses.pod_subnets.get(node.name)
    return {net for net in bgp.parse_bird_routes(routes_output) if net != own}


def bgp_routes(node: NodeHandle) -> set[IPv4Network]:
    """Pod subnets BIRD installed in the node's kernel, its own blackhole left out."""
    return _learned(node, node.exec(BIRD_ROUTES, check=False, timeout=10).stdout)


def _bird_state(node: NodeHandle) -> tuple[str, set[IPv4Network]]:
    """`birdc show protocols` and the learned routes, in one exec (polled while up waits)."""
    output = node.exec(
        f"{bgp.birdc('show protocols')} 2>&1; echo '{_ROUTES_MARKER}'; {BIRD_ROUTES}",
        check=False,
        timeout=10,
    ).stdout
    text, _, routes = output.partition(f"{_ROUTES_MARKER}\n")
    return text, _learned(node, routes)


def _expected_routes(cluster: Cluster, node: str) -> set[IPv4Network]:
    return {subnet for peer, subnet in cluster.addresses.pod_subnets.items() if peer != node}


def bgp_problems(cluster: Cluster, nodes: Sequence[str] | None = None) -> list[str]:
    """What keeps BGP from being converged: down sessions, missing routes
    (on every node running BIRD, routers included)."""

    speakers = list(nodes) if nodes is not None else backends.bgp_speakers(cluster.topology)

    def problems_on(name: str) -> list[str]:
        text, learned = _bird_state(cluster.node(name))
        sessions = _sessions(text)
        found: list[str] = []
        if not sessions or not all(s.established for s in sessions.values()):
            found.append(f"{name}: sessions not all Established; birdc show protocols:\n{text}")
        missing = _expected_routes(cluster, name) - learned
        if missing:
            found.append(f"{name}: no kernel route yet for {', '.join(map(str, sorted(missing)))}")
        return found

    return [p for found in parallel(problems_on, speakers) for p in found]


def wait_bgp_converged(
    cluster: Cluster, within: float = BGP_CONVERGENCE_SECONDS, nodes: Sequence[str] | None = None
) -> None:
    """Every session Established and every pod subnet in every node's kernel."""

    def converged() -> None:
        problems = bgp_problems(cluster, nodes)
        if problems:
            raise AssertionError("\n".join(problems))

    eventually(converged, within=within, every=0.3, what="BGP convergence")


def stop_bird(node: NodeHandle) -> None:
    """Stop BIRD cleanly (its peers get a Cease and withdraw its routes)."""
    node.exec(bgp.stop_script(), timeout=10)


def freeze_bird(node: NodeHandle, frozen: bool = True) -> None:
    """SIGSTOP/SIGCONT BIRD: a hung daemon, noticed by its peers' hold timers."""
    signal = "STOP" if frozen else "CONT"
    node.exec(f"kill -{signal} $(cat {bgp.PID_FILE})", timeout=10)


def start_bird(node: NodeHandle) -> None:
    """Start BIRD again with the node's rendered config."""
    cluster = node.cluster
    spec = backends.bgp_node(cluster.topology, cluster.addresses, node.name)
    node.exec(bgp.start_script(spec), timeout=20)


# -- udp ------------------------------------------------------------------------


def udp_tunnels(node: NodeHandle) -> dict[str, bool]:
    """Each TUN device of the node and whether its socat holds it."""
    cluster = node.cluster
    devices = [p.device for p in backends.udp_peers(cluster.topology, cluster.addresses, node.name)]
    if not devices:
        return {}
    out = node.exec(udp.attached_script(devices), timeout=10).stdout
    return {device: state == "up" for device, state in (line.split() for line in out.splitlines())}


def wait_udp_tunnels(cluster: Cluster, within: float = UDP_ATTACH_SECONDS) -> None:

    def attached() -> None:
        states = parallel(
            lambda n: (n, udp_tunnels(cluster.node(n))), list(cluster.addresses.pod_subnets)
        )
        down = [f"{n}: {d}" for n, tunnels in states for d, up in tunnels.items() if not up]
        if down:
            raise AssertionError(
                f"no socat holds {', '.join(down)} (see /var/log/labkit/lkudp-*.log on the node)"
            )

    eventually(attached, within=within, what="udp tunnels")


# -- the layer --------------------------------------------------------------------


def check_pod_network(topology: Topology) -> None:
    """Fail before anything is created when the MTU leaves pods too little, or the host
    lacks what the backend needs."""
    problems = backends.mtu_problems(topology)
    if problems:
        raise TopologyError(problems, topology.name)
    for feature, what in backends.needed_features(topology):
        features.require(feature, what)


class Convergence(BaseLayer):
    name = "pod network"

    def check(self, cluster: Cluster) -> None:
        check_pod_network(cluster.topology)

    def apply(self, cluster: Cluster) -> None:
        backend = cluster.topology.cluster.backend
        if backend == "bgp":
            wait_bgp_converged(cluster)
        elif backend == "udp":
            wait_udp_tunnels(cluster)

    def sync(self, cluster: Cluster, changed_pods: Sequence[str]) -> None:
        pass  # pods come and go inside each node's block: nothing to re-announce

    def describe(self, cluster: Cluster) -> dict[str, Any]:

        if cluster.topology.cluster.backend not in ("bgp", "udp"):
            return {}
        if cluster.topology.cluster.backend == "bgp":
            nodes = backends.bgp_speakers(cluster.topology)
            states = parallel(lambda n: bgp_protocols(cluster.node(n)), nodes)
            return {
                "bgp": {
                    node: {s.name: f"{s.state} {s.info}".strip() for s in found.values()}
                    for node, found in zip(nodes, states, strict=True)
                }
            }
        nodes = list(cluster.addresses.pod_subnets)
        tunnels = parallel(lambda n: udp_tunnels(cluster.node(n)), nodes)
        return {"udp_tunnels": dict(zip(nodes, tunnels, strict=True))}


class Routing:
    """The pod network's control plane on a running lab (`lab.routing`): BGP and tunnels."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def _node(self, node: NodeHandle | str) -> NodeHandle:
        return self.cluster.node(node) if isinstance(node, str) else node

    def bgp_protocols(self, node: NodeHandle | str) -> dict[str, bgp.ProtocolState]:
        return bgp_protocols(self._node(node))

    def bird_protocols_text(self, node: NodeHandle | str) -> str:
        return bird_protocols_text(self._node(node))

    def bgp_routes(self, node: NodeHandle | str) -> set[IPv4Network]:
        return bgp_routes(self._node(node))

    def wait_bgp_converged(
        self, within: float = BGP_CONVERGENCE_SECONDS, nodes: Sequence[str] | None = None
    ) -> None:
        wait_bgp_converged(self.cluster, within, nodes)

    def stop_bird(self, node: NodeHandle | str) -> None:
        stop_bird(self._node(node))

    def freeze_bird(self, node: NodeHandle | str, frozen: bool = True) -> None:
        freeze_bird(self._node(node), frozen)

    def start_bird(self, node: NodeHandle | str) -> None:
        start_bird(self._node(node))

    def udp_tunnels(self, node: NodeHandle | str) -> dict[str, bool]:
        return udp_tunnels(self._node(node))
