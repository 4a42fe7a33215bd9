"""A live lab: brings a topology up and down, in order. Orchestration only.

The order of `up`: plan every address once -> check everything that can be
checked (images, kernel features, each layer) -> underlay networks -> node
containers (in parallel) -> per node, one script: knobs, CNI, backend, pods ->
the layers above the pod network -> state saved for other processes. Any
failure or interrupt on the way removes what was made.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

from labkit.concurrency import parallel
from labkit.core import pods as lifecycle
from labkit.core import probes
from labkit.core import state as state_store
from labkit.core.cluster import Cluster
from labkit.core.describe import describe_cluster
from labkit.core.handles import PodHandle
from labkit.core.owner import owner_labels, stale_reason
from labkit.dataplane import nodes as node_plan
from labkit.errors import UsageError
from labkit.faults import Faults
from labkit.layers import apply_layers, check_layers, describe_layers, sync_layers
from labkit.layers.convergence import Routing
from labkit.layers.ingress import IngressControl
from labkit.layers.policy import Policies
from labkit.layers.services_api import ServiceHandle, Services
from labkit.layers.vrrp import VrrpControl
from labkit.runtime.base import Runtime
from labkit.runtime.docker import DockerRuntime
from labkit.topology.addressing import plan_addresses
from labkit.topology.loader import load_topology
from labkit.topology.model import Pod, Topology
from labkit.topology.validate import networks_of

Progress = Callable[[str], None]


def lab_name_for(topology: Topology) -> str:
    """The lab's name: the topology's, behind $LABKIT_NAME_PREFIX (for parallel runs)."""
    return os.environ.get("LABKIT_NAME_PREFIX", "") + topology.name


class Lab:
    """A running lab: handles on its nodes and pods, and what can be changed on it."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.timings: dict[str, float] = {}  # the phases of `up`, and in `steps` each pod and layer
        self.steps: dict[str, dict[str, float]] = {"pods": {}, "layers": {}}
        cluster.on_pods_changed = lambda changed: sync_layers(cluster, changed)
        cluster.on_node_rebuilt = lambda node: apply_layers(cluster)
        # Handles on nodes and pods are the cluster's.
        self.node, self.nodes, self.endpoint = cluster.node, cluster.nodes, cluster.endpoint
        self.pod, self.pods, self.reload = cluster.pod, cluster.pods, cluster.reload

    name = property(lambda self: self.cluster.name)
    topology = property(lambda self: self.cluster.topology)
    addresses = property(lambda self: self.cluster.addresses)
    runtime = property(lambda self: self.cluster.runtime)
    source = property(lambda self: self.cluster.source)

    # -- bring up / down ----------------------------------------------------------

    @classmethod
    def up(
        cls,
        topology: Topology | str,
        *,
        runtime: Runtime | None = None,
        progress: Progress = lambda _: None,
        name: str | None = None,
        image: str | None = None,
        keep: bool = False,
    ) -> Lab:
        """Bring a lab up. `keep`: a lab kept on purpose, never reclaimed as stale."""
        source = topology if isinstance(topology, str) else None
        topology = load_topology(topology) if isinstance(topology, str) else topology
        runtime = runtime or DockerRuntime()
        lab_name = name or lab_name_for(topology)
        if lab_name in runtime.lab_names():
            stale = stale_reason(runtime.lab_labels(lab_name))
            if stale is None and runtime.lab_running(lab_name):
                raise UsageError(f"a lab named {lab_name!r} is already up (labkit down {lab_name})")
            print(f"labkit: reclaiming lab {lab_name}: {stale or 'nothing of it runs'}", file=sys.stderr)
            runtime.remove_lab(lab_name)
        addresses = plan_addresses(topology, runtime.taken_subnets())
        cluster = Cluster(lab_name, topology, addresses, runtime, image=image or runtime.node_image(), source=source)
        cluster.owner = owner_labels(keep=keep)
        lab = cls(cluster)
        cluster.check_images()
        check_layers(cluster)
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
    def attach(cls, name: str, runtime: Runtime | None = None) -> Lab:
        """A handle on a lab another process brought up."""
        return cls(Cluster.load(name, runtime or DockerRuntime()))

    @classmethod
    @contextmanager
    def running(
        cls, topology: Topology | str, *, keep: bool = False, reuse: bool = False, **options: Any
    ) -> Iterator[Lab]:
        """Up (or, with `reuse`, attach to the running lab of that name), yield, down unless `keep`."""
        parsed = load_topology(topology) if isinstance(topology, str) else topology
        name = options.get("name") or lab_name_for(parsed)
        runtime = options.setdefault("runtime", None) or DockerRuntime()
        options["runtime"] = runtime
        if reuse and name in runtime.lab_names() and name in state_store.known_labs():
            lab = cls.attach(name, runtime)
        else:
            lab = cls.up(topology, **options)
        try:
            yield lab
        finally:
            if not keep:
                lab.down()

    def down(self) -> int:
        """Remove every container and network of the lab. Idempotent."""
        removed = self.runtime.remove_lab(self.name)
        state_store.forget(self.name)
        return removed

    def _create(self, progress: Progress) -> None:
        cluster, topology = self.cluster, self.topology
        step = time.perf_counter()
        progress(f"creating {len(topology.networks)} underlay network(s)")
        for network, subnet in self.addresses.underlay_subnets.items():
            mtu = topology.networks[network].mtu
            self.runtime.create_network(self.name, network, subnet, self.cluster.owner, mtu=mtu)
        progress(f"starting {len(topology.nodes)} node(s)")
        parallel(self._create_node, topology.nodes)
        self.timings["nodes"] = time.perf_counter() - step
        step = time.perf_counter()
        progress(f"wiring the pod network ({topology.cluster.backend}) and {len(topology.pods)} pod(s)")
        cluster.save()
        built = parallel(lambda node: cluster.node(node).exec(cluster.node_script(node)), topology.nodes)
        self.timings["pods"] = time.perf_counter() - step
        self.steps["pods"] = node_plan.parse_times("".join(result.stdout for result in built))
        step = time.perf_counter()
        self.steps["layers"] = apply_layers(cluster, progress)
        self.timings["layers"] = time.perf_counter() - step
        cluster.save()

    def _create_node(self, node: str) -> None:
        networks = {net: self.addresses.node_ips[node][net] for net in networks_of(self.topology, node)}
        image = self.topology.nodes[node].image or self.cluster.image
        self.runtime.create_node(self.name, node, image, networks, self.cluster.owner)

    def describe(self) -> dict[str, Any]:
        """What `labkit status --json` prints: nodes, pods, and every layer's part."""
        return describe_cluster(self.cluster) | describe_layers(self.cluster)

    # -- changes, and the layers' controls -------------------------------------------

    def service(self, name: str) -> ServiceHandle:
        return self.services.get(name)

    def add_pod(self, name: str, pod: Pod | dict[str, Any]) -> PodHandle:
        return lifecycle.add_pod(self.cluster, name, pod)

    def delete_pod(self, name: str) -> None:
        lifecycle.delete_pod(self.cluster, name)

    def move_pod(self, name: str, node: str) -> PodHandle:
        return lifecycle.move_pod(self.cluster, name, node)

    def set_labels(self, name: str, labels: dict[str, str]) -> None:
        lifecycle.set_labels(self.cluster, name, labels)

    def set_policies(self, policies: Any, namespaces: Any = None) -> dict[str, float]:
        return self.policy.set(policies, namespaces)

    services = cached_property(lambda self: Services(self.cluster))
    ingress = cached_property(lambda self: IngressControl(self.cluster))
    vrrp = cached_property(lambda self: VrrpControl(self.cluster))
    policy = cached_property(lambda self: Policies(self.cluster))
    routing = cached_property(lambda self: Routing(self.cluster))
    faults = cached_property(lambda self: Faults(self.cluster))

    def iperf(self, client: Any, server: Any, **options: Any) -> probes.IperfResult:
        return probes.iperf(client, server, **options)
