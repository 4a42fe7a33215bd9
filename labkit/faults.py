"""Faults: break the network on purpose, and put it back.

    lab.faults.partition(["node-3"])          # node-3 vs every other node
    lab.faults.rate_limit("node-1", "20mbit")
    lab.faults.revert_all()

Every fault that lasts is recorded in the lab's state (so `labkit fault list`
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
from typing import TYPE_CHECKING, Any

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from labkit.dataplane import backends
from labkit.dataplane import pods as pod_plan
from labkit.dataplane.script import q, script
from labkit.dataplane.vxlan import underlay_device
from labkit.errors import LabkitError, UsageError
from labkit.runtime import features

if TYPE_CHECKING:
    from labkit.lab import Lab

STATE_KEY = "faults"
PARTITION_IN = "LABKIT-FAULT-PART-IN"  # raw PREROUTING: what arrives from the other side
PARTITION_OUT = "LABKIT-FAULT-PART-OUT"  # raw OUTPUT: what the node sends to the other side
NODE_RETURN_SECONDS = 30.0
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


def stopped_nodes(lab: Lab) -> set[str]:
    """Nodes stopped by a fault: layers skip them; they get everything when they return."""
    active = lab.layer_state.get(STATE_KEY, {}).get("active", [])
    return {node for item in active if item["kind"] == "node-stop" for node in item["nodes"]}


class Faults:
    """Fault injection on one lab; each method that sets a fault returns it."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    # -- bookkeeping --------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.lab.layer_state.setdefault(
            STATE_KEY, {"next": 1, "active": []}
        )
        return state

    @property
    def active(self) -> list[Fault]:
        return [Fault(**item) for item in self._state()["active"]]

    def _record(self, fault_kind: str, **details: Any) -> Fault:
        state = self._state()
        fault = Fault(state["next"], fault_kind, **details)
        state["next"] += 1
        state["active"].append(asdict(fault))
        self.lab.save()
        return fault

    def _forget(self, fault: Fault) -> None:
        state = self._state()
        state["active"] = [item for item in state["active"] if item["id"] != fault.id]
        self.lab.save()

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
            "rate-limit": lambda f: self._clear_qdisc(f.nodes[0], f.params.get("network")),
            "netem": lambda f: self._clear_qdisc(f.nodes[0], f.params.get("network")),
            "pod-kill": lambda f: self._start_pod(str(f.pod)),
        }[fault.kind]
        # Forgotten first: what the undo re-renders (partitions, a node's faults) must not see it.
        self._forget(fault)
        try:
            undo(fault)
        except BaseException:
            self._state()["active"].append(asdict(fault))
            self.lab.save()
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
        return self.lab.node(node).container

    def stop_node(self, node: str) -> Fault:
        """Stop a node's container: its pods and everything it carries go with it."""
        self.lab.node(node)
        if node in stopped_nodes(self.lab):
            raise UsageError(f"node {node!r} is stopped already")
        self.lab.runtime.stop_node(self._container(node), timeout=1)
        return self._record("node-stop", nodes=[node])

    def start_node(self, node: str) -> None:
        """Start a stopped node; its pods, routes and rules come back."""
        stopped = [f for f in self.active if f.kind == "node-stop" and node in f.nodes]
        if not stopped:
            raise UsageError(f"node {node!r} is not stopped (by labkit)")
        self.revert(stopped[0])

    def restart_node(self, node: str) -> float:
        """Stop and start a node; returns the seconds until it was rebuilt."""
        self.lab.node(node)
        started = time.perf_counter()
        self.lab.runtime.stop_node(self._container(node), timeout=1)
        self._start(node)
        return time.perf_counter() - started

    def _start(self, node: str) -> None:
        lab = self.lab
        lab.runtime.start_node(self._container(node))
        for attempt in Retrying(
            stop=stop_after_delay(NODE_RETURN_SECONDS),
            wait=wait_fixed(0.2),
            retry=retry_if_exception_type(LabkitError),
            reraise=True,
        ):
            with attempt:
                lab.node(node).exec("true")
        lab.node(node).exec(lab.node_scripts(only=[node])[node])
        for layer in lab.active_layers():
            layer.apply(lab)
        self._reassert(node)
        lab.save()

    def _reassert(self, node: str) -> None:
        """Faults still active on a node that came back without them."""
        for fault in self.active:
            if node not in fault.nodes + fault.others or fault.kind == "node-stop":
                continue
            if fault.kind == "rate-limit" or fault.kind == "netem":
                self._set_qdisc(node, fault.params.get("network"), fault.params["qdisc"])
            elif fault.kind == "link-down":
                self.lab.node(node).exec(
                    f"ip link set dev {self._device(node, fault.params.get('network'))} down"
                )
        if any(f.kind == "partition" for f in self.active):
            self._sync_partitions()

    # -- links -----------------------------------------------------------------------

    def _device(self, node: str, network: str | None) -> str:
        return underlay_device(self.lab.addresses.node_ip(node, network))

    def link_down(self, node: str, network: str | None = None) -> Fault:
        """Take a node's underlay interface (on `network`, default its first) down."""
        self.lab.node(node).exec(f"ip link set dev {self._device(node, network)} down")
        return self._record("link-down", nodes=[node], params={"network": network})

    def link_up(self, node: str, network: str | None = None) -> None:
        down = [f for f in self.active if f.kind == "link-down" and node in f.nodes]
        if not down:
            raise UsageError(f"the underlay link of {node!r} is not down (by labkit)")
        self.revert(down[0])

    def _link_up(self, node: str, network: str | None) -> None:
        lab = self.lab
        lab.node(node).exec(f"ip link set dev {self._device(node, network)} up")
        # Routes through the interface went with it: the node's static ones come back.
        parts = [backends.underlay_scripts(lab.topology, lab.addresses).get(node, "")]
        if lab.topology.cluster.backend in REWIRED_BACKENDS:
            parts.append(backends.backend_scripts(lab.topology, lab.addresses).get(node, ""))
        if any(parts):
            lab.node(node).exec("\n".join(part for part in parts if part))
        for layer in lab.active_layers():
            layer.apply(lab)

    # -- partitions ----------------------------------------------------------------------

    def partition(self, nodes: Sequence[str], others: Sequence[str] | None = None) -> Fault:
        """Cut `nodes` off from `others` (default: every other node), both ways."""
        for node in [*nodes, *(others or [])]:
            self.lab.node(node)
        rest = (
            list(others)
            if others is not None
            else [n for n in self.lab.topology.nodes if n not in nodes]
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
        devices = " ".join(underlay_device(ip) for ip in self.lab.addresses.node_ips[node].values())
        output = (
            self.lab.node(node)
            .exec(f"for dev in {devices}; do cat /sys/class/net/$dev/address; done")
            .stdout
        )
        return [line.strip() for line in output.splitlines() if line.strip()]

    def _sync_partitions(self) -> None:
        """Every node's raw-table rules, from the partitions active now."""
        from labkit.lab import parallel

        partitions = [f for f in self.active if f.kind == "partition"]
        involved = sorted({n for f in partitions for n in f.nodes + f.others})
        stopped = stopped_nodes(self.lab)
        up = [n for n in involved if n not in stopped]
        macs = dict(zip(up, parallel(self._macs, up), strict=True))
        blocked: dict[str, set[str]] = {node: set() for node in self.lab.topology.nodes}
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
                    for ip in self.lab.addresses.node_ips[peer].values()
                ],
                [mac for peer in sorted(peers) for mac in macs.get(peer, [])],
            )
            for node, peers in blocked.items()
            if node not in stopped
        }
        parallel(lambda node: self.lab.node(node).exec(scripts[node]), scripts)

    # -- traffic shaping ------------------------------------------------------------------

    def _set_qdisc(self, node: str, network: str | None, qdisc: str) -> None:
        self.lab.node(node).exec(f"tc qdisc replace dev {self._device(node, network)} root {qdisc}")

    def _clear_qdisc(self, node: str, network: str | None) -> None:
        self.lab.node(node).exec(
            f"tc qdisc del dev {self._device(node, network)} root 2>/dev/null || true"
        )

    def _shaped(self, node: str, network: str | None) -> None:
        if any(f.kind in ("rate-limit", "netem") and node in f.nodes for f in self.active):
            raise UsageError(f"node {node!r} is shaped already: revert that fault first")

    def rate_limit(self, node: str, rate: str, network: str | None = None) -> Fault:
        """Cap what a node sends on its underlay interface (tbf), e.g. rate="20mbit"."""
        features.require("tbf", "rate limits")
        self.lab.node(node)
        self._shaped(node, network)
        qdisc = tbf_qdisc(rate)
        self._set_qdisc(node, network, qdisc)
        return self._record(
            "rate-limit", nodes=[node], params={"rate": rate, "network": network, "qdisc": qdisc}
        )

    def netem(
        self,
        node: str,
        *,
        delay: str | None = None,
        jitter: str | None = None,
        loss: str | None = None,
        network: str | None = None,
    ) -> Fault:
        """Delay, jitter and loss on a node's underlay interface (netem), e.g. delay="50ms"."""
        features.require("netem", "delay/jitter/loss faults")
        self.lab.node(node)
        self._shaped(node, network)
        qdisc = netem_qdisc(delay, jitter, loss)
        self._set_qdisc(node, network, qdisc)
        return self._record(
            "netem", nodes=[node], params={"spec": qdisc, "network": network, "qdisc": qdisc}
        )

    # -- pods ---------------------------------------------------------------------------------

    def kill_pod(self, pod: str, container: str | None = None) -> Fault:
        """Kill a pod's processes; its namespace and IP stay. Reverting starts them again."""
        self.lab.pod(pod).kill(container)
        return self._record("pod-kill", pod=pod, params={"container": container})

    def _start_pod(self, pod: str) -> None:
        if pod not in self.lab.topology.pods:
            return  # deleted since: nothing to start
        handle = self.lab.pod(pod)
        handle.node.exec(pod_plan.start_containers_script(self.lab.pod_spec(pod)))
        self.lab.pods_changed([pod])


# -- pure parts ---------------------------------------------------------------------------------


def partition_script(addresses: Sequence[str], macs: Sequence[str]) -> str:
    """Raw-table chains that drop everything from and to the given peers (empty: heal)."""
    lines = ["*raw", f":{PARTITION_IN} - [0:0]", f":{PARTITION_OUT} - [0:0]"]
    lines += [f"-A {PARTITION_IN} -s {address}/32 -j DROP" for address in addresses]
    lines += [f"-A {PARTITION_IN} -m mac --mac-source {mac} -j DROP" for mac in macs]
    lines += [f"-A {PARTITION_OUT} -d {address}/32 -j DROP" for address in addresses]
    lines.append("COMMIT")
    payload = "\n".join(lines)
    return script(
        [
            f"iptables-restore --noflush <<'LABKIT_EOF'\n{payload}\nLABKIT_EOF",
            f"iptables -t raw -C PREROUTING -j {PARTITION_IN} 2>/dev/null || "
            f"iptables -t raw -I PREROUTING 1 -j {PARTITION_IN}",
            f"iptables -t raw -C OUTPUT -j {PARTITION_OUT} 2>/dev/null || "
            f"iptables -t raw -I OUTPUT 1 -j {PARTITION_OUT}",
        ]
    )


UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}


def parse_rate(rate: str) -> float:
    """ "20mbit" -> 2e7 bits per second (tc's units)."""
    text = rate.strip().lower()
    for unit in sorted(UNITS, key=len, reverse=True):
        if text.endswith(unit):
            try:
                return float(text[: -len(unit)]) * UNITS[unit]
            except ValueError:
                break
    raise UsageError(f"rate {rate!r}: use a number and bit, kbit, mbit or gbit (e.g. 20mbit)")


def tbf_qdisc(rate: str) -> str:
    """A tbf that holds 20 ms of traffic in its bucket (at least 32 KiB, for GSO packets)."""
    bits = parse_rate(rate)
    burst = max(int(bits / 8 * 0.02), 32 * 1024)
    return f"tbf rate {int(bits)}bit burst {burst} latency 50ms"


def netem_qdisc(delay: str | None, jitter: str | None, loss: str | None) -> str:
    if not (delay or loss):
        raise UsageError("netem needs a delay or a loss")
    if jitter and not delay:
        raise UsageError("jitter needs a delay")
    words = ["netem"]
    if delay:
        words += ["delay", q(delay)] + ([q(jitter)] if jitter else [])
    if loss:
        words += ["loss", q(loss)]
    return " ".join(words)
