"""A live lab, brought up and down in order. Orchestration only.

`up`: addons (kube-dns pods) join the topology -> plan every address once -> check (images,
kernel features, each layer) -> networks -> nodes (in parallel), each running its one script (knobs,
CNI, backend, pods) -> layers -> state saved. A failure or interrupt removes it all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

from labkit.core import machines, probes
from labkit.core import pods as lifecycle
from labkit.core import state as state_store
from labkit.core.cluster import Cluster, lab_name_for
from labkit.core.describe import describe_cluster
from labkit.core.handles import PodHandle
from labkit.core.owner import claim_name, owner_labels
from labkit.dataplane import nodes as node_plan
from labkit.dataplane.kube_dns import with_cluster_dns
from labkit.dataplane.script import SCRIPT_LIMIT, parse_times, parts_of
from labkit.faults import Faults
from labkit.layers import apply_layers, check_layers, describe_layers, sync_layers
from labkit.layers import build_files as layer_files
from labkit.layers import build_parts as layer_parts
from labkit.layers import manifests as kube
from labkit.layers.convergence import Routing
from labkit.layers.egress import EgressControl
from labkit.layers.ingress import IngressControl
from labkit.layers.policy import Policies
from labkit.layers.services_api import ServiceHandle, Services
from labkit.layers.vrrp import VrrpControl
from labkit.runtime.base import Runtime
from labkit.runtime.docker import DockerRuntime
from labkit.topology.addressing import plan_addresses
from labkit.topology.loader import load_topology
from labkit.topology.model import Pod, Topology


class Lab:
    """A running lab: handles on its nodes and pods, and what can be changed on it."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.timings: dict[str, float] = {}  # the phases of `up`, and in `steps` each pod and layer
        self.steps: dict[str, dict[str, float]] = {"pods": {}, "layers": {}}
        cluster.on_pods_changed = lambda changed: sync_layers(cluster, changed)
        cluster.on_node_rebuilt = lambda node: apply_layers(cluster)
        self.node, self.nodes, self.endpoint = cluster.node, cluster.nodes, cluster.endpoint
        self.pod, self.reload = cluster.pod, cluster.reload
        # The workloads (the addons' pods left out); asked by labels, any pod that has them.
        self.pods = lambda **labels: cluster.pods(**labels) if labels else cluster.workloads()

    name = property(lambda self: self.cluster.name)
    topology = property(lambda self: self.cluster.topology)
    addresses = property(lambda self: self.cluster.addresses)
    runtime = property(lambda self: self.cluster.runtime)
    source = property(lambda self: self.cluster.source)

    @classmethod
    def up(
        cls,
        topology: Topology | str,
        *,
        runtime: Runtime | None = None,
        progress: Callable[[str], None] = lambda _: None,
        name: str | None = None,
        image: str | None = None,
        keep: bool = False,
        source: str | None = None,  # the name or path a Topology given was loaded from
    ) -> Lab:
        """Bring a lab up. `keep`: a lab kept on purpose, never reclaimed as stale."""
        if isinstance(topology, str):
            source, topology = topology, load_topology(topology)
        topology = with_cluster_dns(topology)
        runtime = runtime or DockerRuntime()
        lab_name = name or lab_name_for(topology)
        with state_store.lock(lab_name):  # a down or another up of this name waits its turn
            claim_name(runtime, lab_name)  # reclaims what a dead run left; refuses a lab in use
            addresses = plan_addresses(topology, runtime.taken_subnets())
            image = image or runtime.node_image()
            cluster = Cluster(lab_name, topology, addresses, runtime, image=image, source=source)
            cluster.owner = owner_labels(keep=keep)
            kube.remember(cluster)  # the native part and the manifests' documents, for `apply`
            lab = cls(cluster)
            cluster.check_images()
            check_layers(cluster)
            started = time.perf_counter()
            try:
                lab._create(progress)
            except BaseException:
                progress("failed: removing what was created")
                lab.down()
                machines.remove_late_arrivals(cluster)
                raise
        lab.timings["up"] = time.perf_counter() - started
        return lab

    @classmethod
    def attach(cls, name: str, runtime: Runtime | None = None) -> Lab:  # one another process made
        return cls(Cluster.load(name, runtime or DockerRuntime()))

    @classmethod
    @contextmanager
    def running(
        cls, topology: Topology | str, *, keep: bool = False, reuse: bool = False, **options: Any
    ) -> Iterator[Lab]:
        """Up (or, with `reuse`, attach to the running lab of that name), yield, down unless `keep`."""
        source = topology if isinstance(topology, str) else None
        parsed = load_topology(topology) if isinstance(topology, str) else topology  # once
        runtime = options["runtime"] = options.get("runtime") or DockerRuntime()
        name = options.get("name") or lab_name_for(parsed)
        known = reuse and name in runtime.lab_names() and name in state_store.known_labs()
        lab = cls.attach(name, runtime) if known else cls.up(parsed, source=source, **options)
        try:
            yield lab
        finally:
            if not keep:
                lab.down()

    def down(self) -> int:  # every container and network of the lab; idempotent
        with state_store.lock(self.name):
            removed = self.runtime.remove_lab(self.name)
            state_store.forget(self.name)
        return removed

    def stop(self) -> list[str]:  # on purpose: containers, addresses and state stay
        return machines.stop_lab(self.cluster)

    def start(self) -> list[str]:
        """Bring a stopped lab back (after `stop`, or an engine restart) as recorded:
        each node's whole script, then the layers, then the faults still active."""
        if nodes := machines.start_lab(self.cluster):
            apply_layers(self.cluster)
            self.faults.reassert(nodes)
        self.cluster.save()
        return nodes

    def _create(self, progress: Callable[[str], None]) -> None:
        cluster, topology, step = self.cluster, self.topology, time.perf_counter()
        cluster.state["building"] = True  # until the end: a run killed on the way is junk
        cluster.save()
        progress(f"creating {len(topology.networks)} underlay network(s)")
        machines.create_networks(cluster)
        progress(f"starting {len(topology.nodes)} node(s), each wiring its pod network "
                 f"({topology.cluster.backend}) and pods ({len(topology.pods)}) once it runs")  # fmt: skip
        scripts = node_plan.node_scripts(topology, self.addresses, engine_mtu=cluster.underlay_mtu)
        # The layers' first apply, run by the node scripts: files before, parts after.
        files, parts = layer_files(cluster), layer_parts(cluster)
        whole = {
            n: files.get(n, "") + scripts.get(n, "") + "\n" + parts.get(n, "") for n in scripts
        }
        if all(len(text) < SCRIPT_LIMIT for text in whole.values()):
            scripts = whole
        last_started, outputs = machines.build_nodes(cluster, scripts)
        cluster.built = {
            node: parts_of(out) for node, out in zip(topology.nodes, outputs, strict=True)
        }
        self.timings["nodes"] = last_started - step  # then "pods": the scripts still running
        self.timings["pods"], step = time.perf_counter() - last_started, time.perf_counter()
        self.steps["pods"] = parse_times("".join(outputs))
        step = time.perf_counter()
        try:
            self.steps["layers"] = apply_layers(cluster, progress)
        finally:
            cluster.built = None  # of this moment only
        self.timings["layers"] = time.perf_counter() - step
        cluster.state.pop("building")
        cluster.save()

    def describe(self) -> dict[str, Any]:
        """What `labkit status --json` prints: nodes, pods, and every layer's part."""
        return describe_cluster(self.cluster) | describe_layers(self.cluster)

    def service(self, name: str) -> ServiceHandle:  # `NS/NAME`, or a bare name
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

    def apply(self, manifests: kube.Given, stdin: Any = None) -> kube.ApplyResult:
        """kubectl apply: files, dirs, `-`, or objects; an invalid one changes nothing."""
        return kube.apply(self.cluster, manifests, stdin)

    def delete(self, manifests: kube.Given, stdin: Any = None) -> kube.ApplyResult:  # delete -f
        return kube.delete(self.cluster, manifests, stdin)

    services = cached_property(lambda self: Services(self.cluster))
    ingress = cached_property(lambda self: IngressControl(self.cluster))
    vrrp = cached_property(lambda self: VrrpControl(self.cluster))
    policy = cached_property(lambda self: Policies(self.cluster))
    routing = cached_property(lambda self: Routing(self.cluster))
    faults = cached_property(lambda self: Faults(self.cluster))
    egress = cached_property(lambda self: EgressControl(self.cluster))
    iperf = staticmethod(probes.iperf)  # lab.iperf(client, server, seconds=3)
