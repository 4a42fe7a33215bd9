"""The cluster context: all that a layer, a fault or a pod change sees of a lab.

The topology and its planned addresses, the runtime, the lab's persisted state
(each user keeps its own slice under its own key), which nodes are stopped,
handles on nodes and pods, `save`, and two notifications the lab answers:
pods changed (the layers follow) and a node came back (the layers re-apply).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, cast

from labkit.core import state as state_store
from labkit.core.handles import NodeHandle, PodHandle
from labkit.dataplane import nodes as node_plan
from labkit.dataplane.backends import pod_mtu, underlay_mtu
from labkit.dataplane.pods import PodSpec
from labkit.errors import LabNotFound, Problem, TopologyError, UsageError
from labkit.runtime.base import Runtime, container_name
from labkit.topology.addressing import Addresses
from labkit.topology.keys import resolve
from labkit.topology.model import Topology, key_name, slug

STOPPED_KEY = "stopped_nodes"
SYSTEM_NAMESPACE = "kube-system"


def _nothing(*_: Any) -> None:
    pass


def lab_name_for(topology: Topology) -> str:
    """The lab's name: the topology's, behind $LABKIT_NAME_PREFIX (for parallel runs)."""
    return os.environ.get("LABKIT_NAME_PREFIX", "") + topology.name


class Cluster:
    def __init__(
        self,
        name: str,
        topology: Topology,
        addresses: Addresses,
        runtime: Runtime,
        *,
        image: str = "",
        source: str | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.topology = topology
        self.addresses = addresses
        self.runtime = runtime
        self.image = image
        self.source = source
        self.state: dict[str, Any] = state if state is not None else {}
        self.owner: dict[str, str] = {}  # labels naming the process that brought it up
        # Set by the lab: what follows a pod change, and what a returning node needs.
        self.on_pods_changed: Callable[[Sequence[str]], None] = _nothing
        self.on_node_rebuilt: Callable[[str], object] = _nothing
        # At up, what each layer's part of the node scripts printed (node -> part ->
        # output): a layer's first apply takes it instead of an exec round of its own.
        self.built: dict[str, dict[str, str]] | None = None

    def built_parts(self, name: str, nodes: Sequence[str]) -> dict[str, str] | None:
        """The output of layer part `name` on each of `nodes` at up; None unless all have it."""
        if self.built is None:
            return None
        found = {node: self.built.get(node, {}).get(name) for node in nodes}
        return None if None in found.values() else cast("dict[str, str]", found)

    @classmethod
    def load(cls, name: str, runtime: Runtime) -> Cluster:
        """The cluster another process brought up, from its saved state."""
        loaded = state_store.load(name)
        if loaded is None:
            known = ", ".join(state_store.known_labs()) or "none"
            raise LabNotFound(f"no lab named {name!r} is known (known: {known})")
        topology, addresses, extra = loaded
        if name not in runtime.lab_names():
            state_store.forget(name)
            raise LabNotFound(f"lab {name!r} is not running")
        return cls(
            name, topology, addresses, runtime,
            image=extra.get("image", ""), source=extra.get("source"), state=extra.get("layers", {}),
        )  # fmt: skip

    def reload(self) -> None:
        """Take back the saved state: another process (the CLI) changed the lab."""
        saved = Cluster.load(self.name, self.runtime)
        self.topology, self.addresses, self.state = saved.topology, saved.addresses, saved.state

    def check_images(self) -> None:
        """A node's image override must exist on the engine: nothing can be pulled mid-way."""
        problems = [
            Problem(("nodes", node, "image"), f"image {spec.image!r} is not on this engine")
            for node, spec in self.topology.nodes.items()
            if spec.image is not None and not self.runtime.has_image(spec.image)
        ]
        if problems:
            raise TopologyError(problems, self.source or self.topology.name)

    # -- state ------------------------------------------------------------------
    def slice(self, key: str) -> dict[str, Any]:
        """The part of the lab's state that one layer or feature owns."""
        part: dict[str, Any] = self.state.setdefault(key, {})
        return part

    def save(self) -> None:
        state_store.save(
            self.name,
            self.topology,
            self.addresses,
            {
                "source": self.source,
                "image": self.image,
                "layers": self.state,
                # Where it runs: a multi-host lab's hosts file, for the next process.
                "hosts": self.runtime.where() if hasattr(self.runtime, "where") else None,
                "exec_targets": self.exec_targets(),
            },
        )

    def exec_targets(self) -> dict[str, list[str | None]]:
        """Each node's and pod's container and network namespace (None: the node's own),
        under the names `endpoint` finds first: `labkit exec` reads them without loading
        the lab (a third of its time)."""
        found: dict[str, list[str | None]] = {
            n: [self.container(n), None] for n in self.topology.nodes
        }
        aliases: dict[str, list[list[str | None]]] = {}  # NS/NAME, as `pod` finds it too
        for name, pod in self.topology.pods.items():  # pods win, as in `endpoint`
            found[name] = [self.container(pod.node), None if pod.host_network else slug(name)]
            aliases.setdefault(f"{pod.namespace}/{key_name(name)}", []).append(found[name])
        unique = {alias: wheres[0] for alias, wheres in aliases.items() if len(wheres) == 1}
        return unique | found

    def stopped_nodes(self) -> set[str]:
        """Nodes stopped on purpose: layers skip them; they get everything when they return."""
        return set(self.state.get(STOPPED_KEY, []))

    def mark_stopped(self, node: str, stopped: bool) -> None:
        now = self.stopped_nodes() - {node} | ({node} if stopped else set())
        self.state[STOPPED_KEY] = sorted(now)

    # -- notifications ------------------------------------------------------------
    def pods_changed(self, names: Sequence[str]) -> None:
        """Tell the layers above the pod network that these pods changed."""
        self.on_pods_changed(names)
        self.save()

    def node_rebuilt(self, node: str) -> None:
        """A node's own state was rebuilt (it restarted, a link came back): layers re-apply."""
        self.on_node_rebuilt(node)
        self.save()

    # -- handles and plans ----------------------------------------------------------
    def container(self, node: str) -> str:
        return container_name(self.name, node)

    def node(self, name: str) -> NodeHandle:
        if name not in self.topology.nodes:
            raise UsageError(
                f"no node {name!r} in lab {self.name} (nodes: {', '.join(self.topology.nodes)})"
            )
        return NodeHandle(self, name)

    def nodes(self, role: str | None = None) -> list[NodeHandle]:
        return [
            NodeHandle(self, name)
            for name, spec in self.topology.nodes.items()
            if role is None or role in spec.roles
        ]

    def pod(self, name: str) -> PodHandle:
        """A pod by key, `NS/NAME`, or a bare name (unambiguous, or in default)."""
        if name in self.topology.pods:
            return PodHandle(self, name)
        namespace, slash, bare = name.partition("/")
        in_namespace = [  # keyed by name alone, its namespace a field (kube-dns's, `pod add`'s)
            key for key, spec in self.topology.pods.items()
            if slash and spec.namespace == namespace and key_name(key) == bare
        ]  # fmt: skip
        if len(in_namespace) == 1:
            return PodHandle(self, in_namespace[0])
        return PodHandle(self, resolve(name, self.topology.pods, "pod"))

    def pods(self, **labels: str) -> list[PodHandle]:
        """Every pod whose labels include `labels`, in any namespace (kube-system's too)."""
        return [
            PodHandle(self, name)
            for name, spec in self.topology.pods.items()
            if all(spec.labels.get(k) == v for k, v in labels.items())
        ]

    def workloads(self) -> list[PodHandle]:
        """The pods but the addons' (namespace kube-system, as kube-dns'): what a test
        or a listing means by "the pods"."""
        return [
            PodHandle(self, name)
            for name, spec in self.topology.pods.items()
            if spec.namespace != SYSTEM_NAMESPACE
        ]

    def endpoint(self, name: str) -> NodeHandle | PodHandle:
        """A node or a pod by name (pods win: they are what people poke)."""
        if name in self.topology.pods:
            return self.pod(name)
        if name in self.topology.nodes:
            return self.node(name)
        if any(key_name(key) == name or key == name for key in self.topology.pods) or "/" in name:
            return self.pod(name)
        raise UsageError(
            f"no node or pod {name!r} in lab {self.name} "
            f"(nodes: {', '.join(self.topology.nodes)}; pods: {', '.join(self.topology.pods) or 'none'})"
        )

    def pods_on(self, node: str) -> list[str]:
        return node_plan.pods_on(self.topology, node)

    def pod_spec(self, name: str) -> PodSpec:
        return node_plan.pod_spec(self.topology, self.addresses, name)

    @property
    def underlay_mtu(self) -> int:
        """The MTU pod traffic meets: the topology's networks', or less where the runtime's
        networks give containers less (a Swarm overlay's 1450)."""
        return underlay_mtu(self.topology, self.runtime.underlay_mtu)

    @property
    def pod_mtu(self) -> int:
        """The pods' MTU on this runtime (a multi-host overlay's own header taken off)."""
        return pod_mtu(self.topology, self.underlay_mtu)

    def node_script(self, node: str) -> str:
        return node_plan.node_scripts(
            self.topology, self.addresses, only=[node], engine_mtu=self.underlay_mtu
        )[node]
