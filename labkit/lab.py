"""A live lab: brings a topology up and down in order and applies the plans.

The order of `up`: check everything that can be checked (topology, image,
kernel features) -> underlay networks -> node containers (in parallel) ->
per node, one script: kernel knobs, CNI config, backend, pods -> the layers
above the pod network (services, ingress...) -> state saved for other
processes. Any failure or interrupt on the way removes what was made.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from functools import cached_property
from ipaddress import IPv4Address
from typing import Any, Protocol

from labkit import state
from labkit.concurrency import parallel
from labkit.dataplane import backends
from labkit.dataplane import pods as pod_plan
from labkit.errors import LabNotFound, UsageError
from labkit.handles import NodeHandle, PodHandle
from labkit.runtime.docker import DockerRuntime
from labkit.topology.addressing import Addresses, choose_pod_ip, plan_addresses
from labkit.topology.loader import load_topology
from labkit.topology.model import Pod, Topology
from labkit.topology.validate import networks_of

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class Layer(Protocol):
    """A part of the model built above the pod network (service proxy, ingress...)."""

    name: str

    def wanted(self, lab: Lab) -> bool: ...

    def check(self, lab: Lab) -> None:
        """Raise before anything is created when the host cannot run this layer."""

    def apply(self, lab: Lab) -> None:
        """Build the layer on a fresh lab."""

    def sync(self, lab: Lab, changed_pods: Sequence[str]) -> None:
        """Follow a change of pods (added, deleted, killed, relabelled)."""


# Layers register themselves here (in order) when their module is imported.
LAYERS: list[Layer] = []


def lab_name_for(topology: Topology) -> str:
    """The lab's name: the topology's, behind $LABKIT_NAME_PREFIX (for parallel runs)."""
    return os.environ.get("LABKIT_NAME_PREFIX", "") + topology.name


class Lab:
    def __init__(
        self,
        topology: Topology,
        addresses: Addresses,
        runtime: DockerRuntime,
        *,
        name: str | None = None,
        source: str | None = None,
        image: str = "",
    ) -> None:
        self.topology = topology
        self.addresses = addresses
        self.runtime = runtime
        self.name = name or lab_name_for(topology)
        self.source = source
        self.image = image
        self.timings: dict[str, float] = {}
        self.layer_state: dict[str, Any] = {}

    # -- bring up / down ------------------------------------------------------

    @classmethod
    def up(
        cls,
        topology: Topology | str,
        *,
        runtime: DockerRuntime | None = None,
        progress: Progress = _quiet,
        name: str | None = None,
        image: str | None = None,
    ) -> Lab:
        source = None
        if isinstance(topology, str):
            source = topology
            topology = load_topology(topology)
        runtime = runtime or DockerRuntime()
        lab_name = name or lab_name_for(topology)
        if lab_name in runtime.lab_names():
            if runtime.lab_running(lab_name):
                raise UsageError(f"a lab named {lab_name!r} is already up (labkit down {lab_name})")
            # Nothing of it runs (the engine or host restarted): a dead leftover.
            progress(f"removing the dead leftovers of an earlier {lab_name}")
            runtime.remove_lab(lab_name)
        from labkit.runtime.images import node_image

        image = image or node_image(runtime.client)
        lab = cls(topology, Addresses({}, {}, {}), runtime, name=lab_name, source=source, image=image)
        lab._check_layers()
        started = time.perf_counter()
        try:
            lab._create(progress)
        except BaseException:
            progress("failed: removing what was created")
            lab.down()
            raise
        lab.timings["up"] = time.perf_counter() - started
        return lab

    @classmethod
    def attach(cls, name: str, runtime: DockerRuntime | None = None) -> Lab:
        """A handle on a lab another process brought up."""
        loaded = state.load(name)
        if loaded is None:
            raise LabNotFound(f"no lab named {name!r} is known (known: {', '.join(state.known_labs()) or 'none'})")
        topology, addresses, extra = loaded
        runtime = runtime or DockerRuntime()
        if name not in runtime.lab_names():
            state.forget(name)
            raise LabNotFound(f"lab {name!r} is not running")
        lab = cls(topology, addresses, runtime, name=name, source=extra.get("source"), image=extra.get("image", ""))
        lab.layer_state = extra.get("layers", {})
        return lab

    def down(self) -> int:
        """Remove every container and network of the lab. Idempotent."""
        removed = self.runtime.remove_lab(self.name)
        state.forget(self.name)
        return removed

    def _check_layers(self) -> None:
        self._check_images()
        backends.check_backend(self.topology)
        for layer in self.active_layers():
            layer.check(self)

    def _check_images(self) -> None:
        """A node's image override must exist: nothing can be pulled mid-way."""
        import docker.errors

        from labkit.errors import Problem, TopologyError

        problems = []
        for node, spec in self.topology.nodes.items():
            if spec.image is None:
                continue
            try:
                self.runtime.client.images.get(spec.image)
            except docker.errors.ImageNotFound:
                problems.append(Problem(("nodes", node, "image"), f"image {spec.image!r} is not on this engine"))
        if problems:
            raise TopologyError(problems, self.source or self.topology.name)

    def _create(self, progress: Progress) -> None:
        topology = self.topology
        step = time.perf_counter()
        self.addresses = plan_addresses(topology, self.runtime.taken_subnets())
        progress(f"creating {len(topology.networks)} underlay network(s)")
        for network, subnet in self.addresses.underlay_subnets.items():
            self.runtime.create_network(self.name, network, subnet)
        progress(f"starting {len(topology.nodes)} node(s)")
        parallel(self._create_node, topology.nodes)
        self.timings["nodes"] = time.perf_counter() - step
        step = time.perf_counter()
        progress(f"wiring the pod network ({topology.cluster.backend}) and {len(topology.pods)} pod(s)")
        self.save()
        scripts = self.node_scripts()
        parallel(lambda node: self.node(node).exec(scripts[node]), scripts)
        self.timings["pods"] = time.perf_counter() - step
        step = time.perf_counter()
        for layer in self.active_layers():
            progress(f"applying {layer.name}")
            layer.apply(self)
        self.timings["layers"] = time.perf_counter() - step
        self.save()

    def _create_node(self, node: str) -> None:
        spec = self.topology.nodes[node]
        networks = {net: self.addresses.node_ips[node][net] for net in networks_of(self.topology, node)}
        self.runtime.create_node(self.name, node, spec.image or self.image, networks)

    def node_scripts(self, only: Iterable[str] | None = None) -> dict[str, str]:
        """Per node, the whole script that builds it: knobs, routes, backend, pods."""
        topology, addresses = self.topology, self.addresses
        wanted = set(only) if only is not None else set(topology.nodes)
        backend = backends.backend_scripts(topology, addresses)
        underlay = backends.underlay_scripts(topology, addresses)
        mtu = backends.pod_mtu(topology)
        scripts: dict[str, str] = {}
        for node in topology.nodes:
            if node not in wanted:
                continue
            parts = [underlay.get(node, "")]
            if node in addresses.pod_subnets:
                parts.append(pod_plan.node_setup_script(addresses.pod_subnets[node], mtu))
            # Routers take part in some backends too (bgp: they learn the pod subnets).
            parts.append(backend.get(node, ""))
            if node in addresses.pod_subnets:
                parts += [pod_plan.pod_add_script(self.pod_spec(p)) for p in self.pods_on(node)]
            scripts[node] = "\n".join(part for part in parts if part)
        return scripts

    def save(self) -> None:
        state.save(
            self.name,
            self.topology,
            self.addresses,
            {"source": self.source, "image": self.image, "layers": self.layer_state},
        )

    # -- handles --------------------------------------------------------------

    def node(self, name: str) -> NodeHandle:
        if name not in self.topology.nodes:
            raise UsageError(f"no node {name!r} in lab {self.name} (nodes: {', '.join(self.topology.nodes)})")
        return NodeHandle(self, name)

    def nodes(self, role: str | None = None) -> list[NodeHandle]:
        return [
            NodeHandle(self, name)
            for name, spec in self.topology.nodes.items()
            if role is None or role in spec.roles
        ]

    def pod(self, name: str) -> PodHandle:
        if name not in self.topology.pods:
            raise UsageError(f"no pod {name!r} in lab {self.name} (pods: {', '.join(self.topology.pods)})")
        return PodHandle(self, name)

    def pods(self, **labels: str) -> list[PodHandle]:
        """All pods, or those whose labels include `labels`."""
        return [
            PodHandle(self, name)
            for name, spec in self.topology.pods.items()
            if all(spec.labels.get(k) == v for k, v in labels.items())
        ]

    def service(self, name: str) -> Any:
        """A `labkit.layers.services.ServiceHandle`: VIP, ports, node ports, endpoints."""
        from labkit.layers.services import service_handle

        return service_handle(self, name)

    def pods_on(self, node: str) -> list[str]:
        return [name for name, pod in self.topology.pods.items() if pod.node == node]

    def endpoint(self, name: str) -> NodeHandle | PodHandle:
        """A node or a pod by name (pods win: they are what people poke)."""
        if name in self.topology.pods:
            return self.pod(name)
        if name in self.topology.nodes:
            return self.node(name)
        raise UsageError(
            f"no node or pod {name!r} in lab {self.name} "
            f"(nodes: {', '.join(self.topology.nodes)}; pods: {', '.join(self.topology.pods) or 'none'})"
        )

    def pod_spec(self, name: str) -> pod_plan.PodSpec:
        pod = self.topology.pods[name]
        mappings = tuple(
            {"hostPort": p.host_port, "containerPort": p.port, "protocol": p.protocol.lower()}
            for p in pod.ports
            if p.host_port
        )
        return pod_plan.PodSpec(
            name=name,
            node=pod.node,
            namespace=pod.namespace,
            ip=self.addresses.pod_ips[name],
            commands=tuple(pod.run),
            port_mappings=mappings,
        )

    def active_layers(self) -> list[Layer]:
        import labkit.layers  # noqa: F401  (registers the layers)

        return [layer for layer in LAYERS if layer.wanted(self)]

    # -- changes --------------------------------------------------------------

    def add_pod(self, name: str, pod: Pod | dict[str, Any]) -> PodHandle:
        """Create a pod on a running lab; services and the rest follow."""
        spec = pod if isinstance(pod, Pod) else Pod.model_validate(pod)
        if name in self.topology.pods:
            raise UsageError(f"pod {name!r} exists already")
        if spec.node not in self.addresses.pod_subnets:
            raise UsageError(f"node {spec.node!r} runs no pods (pod nodes: {', '.join(self.addresses.pod_subnets)})")
        subnet = self.addresses.pod_subnets[spec.node]
        if spec.ip is not None and (spec.ip not in subnet or spec.ip in self.addresses.pod_ips.values()):
            raise UsageError(f"pod IP {spec.ip} is outside {subnet} of node {spec.node} or taken")
        released: dict[str, str] = self.layer_state.setdefault("released_ips", {})
        ip = self.choose_pod_ip(name, spec.node, spec.ip)
        self.topology.pods[name] = spec
        self.addresses.pod_ips[name] = ip
        try:
            self.node(spec.node).exec(pod_plan.pod_add_script(self.pod_spec(name)))
        except BaseException:
            self.node(spec.node).exec(pod_plan.pod_delete_script(name), check=False)
            del self.topology.pods[name], self.addresses.pod_ips[name]
            raise
        if released.get(name) == str(ip):
            del released[name]
        self.pods_changed([name])
        return self.pod(name)

    def choose_pod_ip(self, name: str, node: str, pinned: IPv4Address | None = None) -> IPv4Address:
        """The IP for pod `name` on `node`: pinned; else its own from before (sticky);
        else the lowest free one that no deleted pod may come back for."""
        released: dict[str, str] = self.layer_state.setdefault("released_ips", {})
        others = [ip for pod_name, ip in released.items() if pod_name != name]
        used = [ip for pod_name, ip in self.addresses.pod_ips.items() if pod_name != name]
        return choose_pod_ip(
            self.addresses.pod_subnets[node], used, pinned=pinned, sticky=released.get(name), reserved=others
        )

    def move_pod(self, name: str, node: str) -> PodHandle:
        """Recreate a pod on another node with a new pod IP; every layer follows."""
        from labkit.moves import move_pod

        return move_pod(self, name, node)

    def set_policies(self, policies: Any, namespaces: Any = None) -> dict[str, float]:
        """Replace the network policies (and namespaces); see labkit.layers.policy."""
        from labkit.layers.policy import set_policies

        return set_policies(self, policies, namespaces)

    @cached_property
    def faults(self) -> Any:
        """Break the network on purpose (labkit.faults.Faults); each fault can be reverted."""
        from labkit.faults import Faults

        return Faults(self)

    def delete_pod(self, name: str) -> None:
        pod = self.pod(name)
        node = pod.node
        del self.topology.pods[name]
        node.exec(pod_plan.pod_delete_script(name))
        # Sticky addresses: the next pod of that name on that node gets it back.
        self.layer_state.setdefault("released_ips", {})[name] = str(self.addresses.pod_ips.pop(name))
        self.pods_changed([name])

    def set_labels(self, name: str, labels: dict[str, str]) -> None:
        self.pod(name)
        self.topology.pods[name].labels = dict(labels)
        self.pods_changed([name])

    def pods_changed(self, names: Sequence[str]) -> None:
        """Tell the layers above the pod network that these pods changed."""
        for layer in self.active_layers():
            layer.sync(self, names)
        self.save()

    # -- measurements ---------------------------------------------------------

    def iperf(self, client: Any, server: Any, **options: Any) -> Any:
        from labkit import probes

        return probes.iperf(client, server, **options)
