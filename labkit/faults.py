"""Faults: break the network on purpose, and put it back.

    cluster.faults.partition(["node-3"])          # node-3 vs every other node
    cluster.faults.rate_limit("node-1", "20mbit")
    cluster.faults.revert_all()

Every fault that lasts is recorded in the cluster's state (so `labkit fault list`
and `labkit fault revert` work from another process) and reverts with
`revert(fault)`; the pytest fixture `faults` reverts those a test set.

How each is made, and why:
- stop/start/restart a node: the node container is stopped and started. Its
  network namespace is new when it returns, so the node's whole script runs
  again (knobs, backend, pods: the pod script is idempotent) and then every
  layer's `apply`, and the faults still active on it are set again.
- link down/up: `ip link set down` on the node's underlay interface inside
  the node. Going down drops the routes through it, so coming up re-runs the
  node's underlay routes, its backend (vxlan, host-gw: static state) and
  every layer's `apply`.
- partition: iptables DROP in the raw table of every node on both sides, by
  the other side's underlay addresses (encapsulated pod traffic, the nodes'
  own traffic) and MAC addresses (host-gw pod traffic, whose IPs are pod IPs).
  Not a Docker network disconnect: that cannot split one segment into
  groups that still talk among themselves, and it takes the interface away,
  with its routes. Raw is before conntrack, so established flows are cut too.
- rate limit: tbf on the node's underlay interface (its egress).
- delay, jitter, loss: netem on the same interface, where the kernel has it.
- kill a pod: its processes (the namespace and IP stay); reverting starts them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import ValidationError

from labkit.concurrency import parallel
from labkit.core import machines
from labkit.core.cluster import Cluster
from labkit.core.handles import Link
from labkit.dataplane import backends
from labkit.dataplane import pods as pod_plan
from labkit.dataplane.faults import partition_script
from labkit.dataplane.impairments import changed_qdisc, topology_qdisc
from labkit.dataplane.vxlan import underlay_device
from labkit.errors import UsageError
from labkit.runtime import features
from labkit.topology.model import Impairment

STATE_KEY = "faults"
REWIRED_BACKENDS = ("vxlan", "host-gw")  # static state a link flap loses; daemons re-learn theirs


@dataclass
class Fault:
    """One active fault; `nodes`/`others` are node names, `pod` a pod name."""

    id: int
    kind: str  # node-stop | link-down | partition | rate-limit | netem | pod-kill
    nodes: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)
    pod: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    since: float = field(default_factory=time.time)

    def __str__(self) -> str:
        what = {
            "node-stop": f"node {', '.join(self.nodes)} stopped",
            "link-down": f"underlay link of {', '.join(self.nodes)} down",
            "partition": f"{', '.join(self.nodes)} cut off from {', '.join(self.others)}",
            "rate-limit": f"{', '.join(self.nodes)} egress limited to {self.params.get('rate')}",
            "netem": f"{', '.join(self.nodes)} netem {self.params.get('spec')}",
            "pod-kill": f"pod {self.pod} processes killed",
        }.get(self.kind, self.kind)
        return f"#{self.id} {what}"


class Faults:
    """Fault injection on one cluster; each method that sets a fault returns it."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    # -- bookkeeping --------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.cluster.state.setdefault(STATE_KEY, {"next": 1, "active": []})
        return state

    @property
    def active(self) -> list[Fault]:
        return [Fault(**item) for item in self._state()["active"]]

    def _record(self, fault_kind: str, **details: Any) -> Fault:
        state = self._state()
        fault = Fault(state["next"], fault_kind, **details)
        state["next"] += 1
        state["active"].append(asdict(fault))
        self.cluster.save()
        return fault

    def _forget(self, fault: Fault) -> None:
        state = self._state()
        state["active"] = [item for item in state["active"] if item["id"] != fault.id]
        self.cluster.save()

    def get(self, fault_id: int) -> Fault:
        for fault in self.active:
            if fault.id == fault_id:
                return fault
        known = ", ".join(str(f) for f in self.active) or "none"
        raise UsageError(f"no active fault #{fault_id} (active: {known})")

    def revert(self, fault: Fault | int) -> None:
        fault = self.get(fault) if isinstance(fault, int) else fault
        undo = {
            "node-stop": lambda f: self._start(f.nodes[0]),
            "link-down": lambda f: self._link_up(f.nodes[0], f.params.get("network")),
            "partition": lambda f: self._sync_partitions(),
            "rate-limit": lambda f: self._restore_qdisc(f.nodes[0], f.params.get("network")),
            "netem": lambda f: self._restore_qdisc(f.nodes[0], f.params.get("network")),
            "pod-kill": lambda f: self._start_pod(str(f.pod)),
        }[fault.kind]
        # Forgotten first: what the undo re-renders (partitions, a node's faults) must not see it.
        self._forget(fault)
        try:
            undo(fault)
        except BaseException:
            self._state()["active"].append(asdict(fault))
            self.cluster.save()
            raise

    def revert_all(self, faults: Iterable[Fault] | None = None) -> list[Fault]:
        """Revert (the given, or all active) faults, the newest first; the ones reverted."""
        todo = list(faults) if faults is not None else self.active
        reverted = []
        for fault in sorted(todo, key=lambda f: f.id, reverse=True):
            if any(f.id == fault.id for f in self.active):
                self.revert(fault)
                reverted.append(fault)
        return reverted

    # -- nodes ------------------------------------------------------------------------

    def _container(self, node: str) -> str:
        return self.cluster.node(node).container

    def stop_node(self, node: str) -> Fault:
        """Stop a node's container: its pods and everything it carries go with it."""
        self.cluster.node(node)
        if node in self.cluster.stopped_nodes():
            raise UsageError(f"node {node!r} is stopped already")
        self.cluster.runtime.stop_node(self._container(node), timeout=1)
        self.cluster.mark_stopped(node, True)
        return self._record("node-stop", nodes=[node])

    def start_node(self, node: str) -> None:
        """Start a stopped node; its pods, routes and rules come back."""
        stopped = [f for f in self.active if f.kind == "node-stop" and node in f.nodes]
        if not stopped:
            raise UsageError(f"node {node!r} is not stopped (by labkit)")
        self.revert(stopped[0])

    def restart_node(self, node: str) -> float:
        """Stop and start a node; returns the seconds until it was rebuilt."""
        self.cluster.node(node)
        started = time.perf_counter()
        self.cluster.runtime.stop_node(self._container(node), timeout=1)
        self._start(node)
        return time.perf_counter() - started

    def _start(self, node: str) -> None:
        machines.rebuild_node(self.cluster, node)
        self.cluster.mark_stopped(node, False)
        self.cluster.node_rebuilt(node)
        self.reassert([node])
        self.cluster.save()

    def reassert(self, nodes: Sequence[str]) -> None:
        """Set again the faults still active on nodes that came back without them."""
        for fault in self.active:
            for node in set(nodes) & set(fault.nodes + fault.others):
                if fault.kind in ("rate-limit", "netem"):
                    self._set_qdisc(node, fault.params.get("network"), fault.params["qdisc"])
                elif fault.kind == "link-down":
                    self._link(node, fault.params.get("network")).down()
        if any(f.kind == "partition" for f in self.active):
            self._sync_partitions()

    # -- links -----------------------------------------------------------------------

    def _link(self, node: str, network: str | None) -> Link:
        return self.cluster.node(node).link(network)

    def link_down(self, node: str, network: str | None = None) -> Fault:
        """Take a node's underlay interface (on `network`, default its first) down."""
        self._link(node, network).down()
        return self._record("link-down", nodes=[node], params={"network": network})

    def link_up(self, node: str, network: str | None = None) -> None:
        down = [f for f in self.active if f.kind == "link-down" and node in f.nodes]
        if not down:
            raise UsageError(f"the underlay link of {node!r} is not down (by labkit)")
        self.revert(down[0])

    def _link_up(self, node: str, network: str | None) -> None:
        cluster = self.cluster
        self._link(node, network).up()
        # Routes through the interface went with it: the node's static ones come back.
        parts = [backends.underlay_scripts(cluster.topology, cluster.addresses).get(node, "")]
        if cluster.topology.cluster.backend in REWIRED_BACKENDS:
            parts.append(
                backends.backend_scripts(
                    cluster.topology, cluster.addresses, cluster.underlay_mtu
                ).get(node, "")
            )
        if any(parts):
            cluster.node(node).exec("\n".join(part for part in parts if part))
        cluster.node_rebuilt(node)

    # -- partitions ----------------------------------------------------------------------

    def partition(self, nodes: Sequence[str], others: Sequence[str] | None = None) -> Fault:
        """Cut `nodes` off from `others` (default: every other node), both ways."""
        for node in [*nodes, *(others or [])]:
            self.cluster.node(node)
        rest = (
            list(others)
            if others is not None
            else [n for n in self.cluster.topology.nodes if n not in nodes]
        )
        if not nodes or not rest or set(nodes) & set(rest):
            raise UsageError("a partition needs two disjoint, non-empty sets of nodes")
        fault = self._record("partition", nodes=list(nodes), others=rest)
        try:
            self._sync_partitions()
        except BaseException:
            self._forget(fault)
            self._sync_partitions()
            raise
        return fault

    def heal(self) -> list[Fault]:
        """Revert every partition."""
        return self.revert_all([f for f in self.active if f.kind == "partition"])

    def _macs(self, node: str) -> list[str]:
        """The node's MAC addresses on its underlay interfaces."""
        devices = " ".join(
            underlay_device(ip) for ip in self.cluster.addresses.node_ips[node].values()
        )
        output = (
            self.cluster.node(node)
            .exec(f"for dev in {devices}; do cat /sys/class/net/$dev/address; done")
            .stdout
        )
        return [line.strip() for line in output.splitlines() if line.strip()]

    def _sync_partitions(self) -> None:
        """Every node's raw-table rules, from the partitions active now."""

        partitions = [f for f in self.active if f.kind == "partition"]
        involved = sorted({n for f in partitions for n in f.nodes + f.others})
        stopped = self.cluster.stopped_nodes()
        up = [n for n in involved if n not in stopped]
        macs = dict(zip(up, parallel(self._macs, up), strict=True))
        blocked: dict[str, set[str]] = {node: set() for node in self.cluster.topology.nodes}
        for fault in partitions:
            for node in fault.nodes:
                blocked[node] |= set(fault.others)
            for node in fault.others:
                blocked[node] |= set(fault.nodes)
        scripts = {
            node: partition_script(
                [
                    str(ip)
                    for peer in sorted(peers)
                    for ip in self.cluster.addresses.node_ips[peer].values()
                ],
                [mac for peer in sorted(peers) for mac in macs.get(peer, [])],
            )
            for node, peers in blocked.items()
            if node not in stopped
        }
        parallel(lambda node: self.cluster.node(node).exec(scripts[node]), scripts)

    # -- traffic shaping ------------------------------------------------------------------

    def _set_qdisc(self, node: str, network: str | None, qdisc: str) -> None:
        self._link(node, network).shape(qdisc)

    def _network(self, node: str, network: str | None) -> str:
        return network or next(iter(self.cluster.addresses.node_ips[node]))

    def _restore_qdisc(self, node: str, network: str | None) -> None:
        """Back to the link's own qdisc from the topology (its impairment), or none."""
        own = topology_qdisc(self.cluster.topology, node, self._network(node, network))
        link = self._link(node, network)
        if own:
            link.shape(own)
        else:
            link.clear_shaping()

    def _shape(self, kind: str, node: str, network: str | None, change: dict[str, Any]) -> Fault:
        """Set a shaping fault over the link's impairment from the topology."""
        self.cluster.node(node)
        if any(f.kind in ("rate-limit", "netem") and node in f.nodes for f in self.active):
            raise UsageError(f"node {node!r} is shaped already: revert that fault first")
        try:
            settings = Impairment(**change)
        except ValidationError as exc:
            raise UsageError("; ".join(str(e["msg"]) for e in exc.errors())) from None
        qdisc = changed_qdisc(self.cluster.topology, node, self._network(node, network), settings)
        features.require(qdisc.split()[0], f"{kind} faults")  # tbf, or netem where it folds in
        self._set_qdisc(node, network, qdisc)
        params = {k: v for k, v in change.items() if v is not None}
        shown = {"rate": params.get("rate")} if kind == "rate-limit" else {"spec": qdisc}
        return self._record(
            kind, nodes=[node], params={**shown, "network": network, "qdisc": qdisc}
        )

    def rate_limit(self, node: str, rate: str, network: str | None = None) -> Fault:
        """Cap what a node sends on its underlay interface, e.g. rate="20mbit" (tbf; a
        link the topology delays keeps its delay, the rate folded into its netem)."""
        return self._shape("rate-limit", node, network, {"rate": rate})

    def netem(
        self,
        node: str,
        *,
        delay: str | None = None,
        jitter: str | None = None,
        loss: str | None = None,
        network: str | None = None,
    ) -> Fault:
        """Delay, jitter and loss on a node's underlay interface (netem), e.g. delay="50ms";
        settings not given keep the link's own from the topology."""
        if not (delay or loss):
            raise UsageError("netem needs a delay or a loss")
        if jitter and not delay:
            raise UsageError("jitter needs a delay")
        return self._shape("netem", node, network, {"delay": delay, "jitter": jitter, "loss": loss})

    # -- pods ---------------------------------------------------------------------------------

    def kill_pod(self, pod: str, container: str | None = None) -> Fault:
        """Kill a pod's processes; its namespace and IP stay. Reverting starts them again."""
        self.cluster.pod(pod).kill(container)
        return self._record("pod-kill", pod=pod, params={"container": container})

    def _start_pod(self, pod: str) -> None:
        if pod not in self.cluster.topology.pods:
            return  # deleted since: nothing to start
        handle = self.cluster.pod(pod)
        handle.node.exec(pod_plan.start_containers_script(self.cluster.pod_spec(pod)))
        self.cluster.pods_changed([pod])
