"""The Swarm runtime: one lab over several Docker hosts that form a Swarm.

Underlay networks are Swarm `attachable` `overlay` networks, `internal`,
created once on a manager with the planned subnet. Node containers stay plain
containers (privileged or the capability fallback, as on one host), created
on the host that placement gives them and attached to the overlays with
static IPs. Exec, files, start/stop go to the node's host; inventory and
cleanup run on every host in parallel, an unreachable host is reported.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network
from typing import Any, TypeVar

import docker
import docker.errors

from labkit.errors import LabkitError, UsageError
from labkit.runtime.base import ExecResult, NodeMode, container_name
from labkit.runtime.docker import DockerRuntime
from labkit.runtime.fleet import (
    Cleanup,
    HostLost,
    HostUnreachable,
    on_all,
    reason,
    unreachable_text,
)
from labkit.runtime.l2 import shared_l2
from labkit.runtime.network_spec import lab_network
from labkit.runtime.swarm_cleanup import clean_lab
from labkit.runtime.swarm_networks import create_macvlan, create_overlay, free_l2_parent
from labkit.runtime.swarm_setup import connect_host, ship_image
from labkit.topology.inventory import Inventory

HOST_LABEL = "labkit.host"
T = TypeVar("T")
# A Swarm overlay is VXLAN between the hosts: its containers get 1500 - 50
# (the engine's default; `com.docker.network.driver.mtu` would set the outer
# MTU, and give containers 50 less again). tests/multihost measure it.
OVERLAY_MTU = 1450


class SwarmRuntime:
    """The Runtime protocol over several engines (host name -> DockerRuntime) in one swarm.

    `l2_networks` (on a free one of `l2_parents`, the hosts' shared interfaces) are made a
    macvlan network on each host instead of an overlay: true L2 for VRRP.
    """

    underlay_mtu: int | None = OVERLAY_MTU

    def __init__(
        self,
        hosts: Mapping[str, DockerRuntime],
        placement: Mapping[str, str] | None = None,
        *,
        image_source: DockerRuntime | None = None,
        l2_networks: Sequence[str] = (),
        l2_parents: Sequence[str] = (),
        hosts_file: str | None = None,
    ) -> None:
        if not hosts:
            raise UsageError("a multi-host runtime needs at least one host")
        self.hosts = dict(hosts)
        self.placement = dict(placement or {})  # node -> host
        self.image_source = image_source
        self._where: dict[str, str] = {}  # container -> host
        self._lock = threading.Lock()
        self._manager: str | None = None
        self.l2_networks, self.l2_parents = set(l2_networks), list(l2_parents)
        self.hosts_file = hosts_file  # remembered in the lab's state for the next process

    @classmethod
    def from_inventory(
        cls,
        inventory: Inventory,
        placement: Mapping[str, str] | None = None,
        *,
        image_source: DockerRuntime | None = None,
        **options: Any,
    ) -> SwarmRuntime:
        hosts = {name: DockerRuntime(connect_host(host)) for name, host in inventory.hosts.items()}
        return cls(hosts, placement or inventory.nodes, image_source=image_source, **options)

    # -- hosts --------------------------------------------------------------

    def manager(self) -> str:
        """The first host (in file order) that is a reachable swarm manager."""
        if self._manager is None:
            for name, runtime in self.hosts.items():
                try:
                    swarm = runtime.client.info().get("Swarm") or {}
                except (docker.errors.DockerException, OSError):
                    continue
                if swarm.get("ControlAvailable"):
                    self._manager = name
                    break
            else:
                raise HostUnreachable(
                    "no host of the hosts file is a reachable swarm manager: "
                    "form a swarm (`labkit hosts init`) or bring a manager back"
                )
        return self._manager

    def swarm_problems(self) -> list[str]:
        """Why these hosts are not one swarm (empty when they are)."""
        problems: list[str] = []
        infos, failures = self._on_all(lambda _, runtime: runtime.client.info())
        problems += [f"host {name}: unreachable ({why})" for name, why in failures.items()]
        node_ids = {}
        for name, info in infos.items():
            swarm = info.get("Swarm") or {}
            if swarm.get("LocalNodeState") != "active":
                problems.append(
                    f"host {name}: not in a swarm (state {swarm.get('LocalNodeState')})"
                )
            else:
                node_ids[name] = swarm.get("NodeID")
        if node_ids and not problems:
            members = {node.id for node in self.hosts[self.manager()].client.nodes.list()}
            problems += [
                f"host {name}: in another swarm than {self.manager()}"
                for name, node_id in node_ids.items()
                if node_id not in members
            ]
        return problems

    def host_of(self, container: str) -> str:
        """The host that runs `container` (remembered on create, else looked up everywhere).

        Not found on the hosts that answer, but placed on one that does not:
        that host (its nodes are lost, not missing).
        """
        if container in self._where:
            return self._where[container]
        found, failures = self._on_all(
            lambda _, runtime: bool(
                runtime.client.api.containers(all=True, filters={"name": f"^/{container}$"})
            )
        )
        for name, present in found.items():
            if present:
                self._where[container] = name
                return name
        for node, host in self.placement.items():
            if container.endswith(f"-{node}") and host in failures:
                return host
        raise LabkitError(f"no container {container!r} on any host: is the lab up?")

    def where(self) -> dict[str, Any]:
        """What the next process needs to find this lab's hosts (saved with the lab)."""
        return {"file": self.hosts_file, "placement": dict(self.placement)}

    def _routed(self, container: str, work: Callable[[DockerRuntime], T]) -> T:
        """Run `work` on the container's host; a host that stopped answering is HostLost."""
        host = self.host_of(container)
        try:
            return work(self.hosts[host])
        except (docker.errors.DockerException, OSError) as error:
            if isinstance(error, docker.errors.APIError):
                raise
            raise HostLost(
                f"{container} is lost: its host {host!r} does not answer ({reason(error)})"
            ) from None

    def _host_for_node(self, node: str) -> str:
        """The placed host, else the least loaded one (ties: file order)."""
        with self._lock:
            if node not in self.placement:
                load = {name: 0 for name in self.hosts}
                for host in self.placement.values():
                    load[host] = load.get(host, 0) + 1
                names = list(self.hosts)
                self.placement[node] = min(names, key=lambda h: (load[h], names.index(h)))
            host = self.placement[node]
        if host not in self.hosts:
            raise UsageError(f"node {node!r} is placed on unknown host {host!r}")
        return host

    # -- engine ---------------------------------------------------------------

    def taken_subnets(self) -> list[IPv4Network]:
        """Every host's engine networks; not this machine's routes (they are not the hosts')."""
        found, failures = self._on_all(lambda _, runtime: runtime.engine_subnets())
        if failures:
            raise HostUnreachable(unreachable_text(failures))
        return sorted({subnet for subnets in found.values() for subnet in subnets})

    def node_image(self) -> str:
        """The node image tag (from the image source, else the first host that has it), on every host."""
        tag = None
        candidates = [self.image_source] if self.image_source else list(self.hosts.values())
        errors = []
        for runtime in candidates:
            try:
                tag = runtime.node_image()
                break
            except LabkitError as error:
                errors.append(str(error))
        if tag is None:
            raise LabkitError(errors[0] if errors else "no node image on any host")
        self.ensure_image(tag)
        return tag

    def ensure_image(self, tag: str) -> list[str]:
        """Ship `tag` by save/load to every host that lacks it; the hosts it was shipped to."""
        have, failures = self._on_all(lambda _, runtime: runtime.has_image(tag))
        if failures:
            raise HostUnreachable(unreachable_text(failures))
        missing = [name for name, present in have.items() if not present]
        if not missing:
            return []
        if self.image_source is not None and self.image_source.has_image(tag):
            source = self.image_source.client
        else:
            holders = [name for name, present in have.items() if present]
            if not holders:
                raise LabkitError(f"image {tag} is on no host: build it (`labkit images build`)")
            source = self.hosts[holders[0]].client
        ship_image(source, [self.hosts[name].client for name in missing], tag)
        return missing

    def has_image(self, ref: str) -> bool:
        have, failures = self._on_all(lambda _, runtime: runtime.has_image(ref))
        return not failures and all(have.values())

    def node_mode(self, image: str) -> NodeMode:
        modes, failures = self._on_all(lambda _, runtime: runtime.node_mode(image))
        if failures:
            raise HostUnreachable(unreachable_text(failures))
        privileged = all(mode.privileged for mode in modes.values())
        reason = "; ".join(f"{name}: {mode.reason}" for name, mode in modes.items())
        return NodeMode(privileged, reason)

    def engine_info(self) -> dict[str, Any]:
        infos, failures = self._on_all(lambda _, runtime: runtime.engine_info())
        first = next(iter(infos.values()), {})
        return {**first, "hosts": infos, "unreachable": failures}

    def run_throwaway(self, image: str, script: str, *, timeout: float) -> str:
        return self.hosts[self.manager()].run_throwaway(image, script, timeout=timeout)

    # -- networks and nodes ---------------------------------------------------

    def create_network(
        self,
        lab: str,
        network: str,
        subnet: IPv4Network,
        extra_labels: Mapping[str, str] | None = None,
        mtu: int | None = None,
        driver: str = "bridge",
    ) -> str:
        """An attachable, internal overlay, once, on a manager: every host sees the same one
        (a macvlan network on every host for `l2_networks`; see swarm_networks.py).

        `mtu` is not passed on: an overlay gives containers its own (1450), and the
        driver's option would take another 50 from them; the pod MTU follows `underlay_mtu`."""
        if driver != "bridge":
            raise UsageError(
                f"network {network!r}: driver {driver} needs one engine; over several hosts, "
                "list the network under the hosts file's `l2:` (a macvlan on every host)"
            )
        spec = lab_network(lab, network, subnet, extra_labels)
        manager = self.hosts[self.manager()]
        if network in self.l2_networks:
            create_macvlan(self.hosts, spec, free_l2_parent(manager, self.l2_parents))
        else:
            create_overlay(manager, spec)
        return spec.name

    def create_node(
        self,
        lab: str,
        node: str,
        image: str,
        networks: Mapping[str, IPv4Address],
        extra_labels: Mapping[str, str] | None = None,
    ) -> str:
        host, labels = self._place(lab, node, extra_labels)
        return self.hosts[host].create_node(lab, node, image, networks, labels)

    def create_node_running(
        self,
        lab: str,
        node: str,
        image: str,
        networks: Mapping[str, IPv4Address],
        extra_labels: Mapping[str, str] | None = None,
        *,
        script: str,
        on_start: Callable[[], None] = lambda: None,
    ) -> ExecResult:
        host, labels = self._place(lab, node, extra_labels)
        return self.hosts[host].create_node_running(
            lab, node, image, networks, labels, script=script, on_start=on_start
        )

    def _place(
        self, lab: str, node: str, extra_labels: Mapping[str, str] | None
    ) -> tuple[str, dict[str, str]]:
        """The node's host, remembered for its container (before it exists: a failed
        first boot names its host), and the labels that say it."""
        host = self._host_for_node(node)
        self._where[container_name(lab, node)] = host
        return host, {HOST_LABEL: host, **(extra_labels or {})}

    def start_node(self, container: str) -> None:
        self._routed(container, lambda runtime: runtime.start_node(container))

    def stop_node(self, container: str, timeout: int = 2) -> None:
        self._routed(container, lambda runtime: runtime.stop_node(container, timeout))

    def is_running(self, container: str) -> bool:
        return self._routed(container, lambda runtime: runtime.is_running(container))

    # -- exec and files -------------------------------------------------------

    def exec(
        self,
        container: str,
        command: str | list[str],
        *,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        return self._routed(
            container,
            lambda runtime: runtime.exec(container, command, check=check, env=env, timeout=timeout),
        )

    def exec_stream(
        self, container: str, command: str | list[str]
    ) -> Generator[tuple[bytes, bytes], None, int]:
        return self._routed(container, lambda runtime: runtime.exec_stream(container, command))

    def put_file(self, container: str, path: str, content: str | bytes, mode: int = 0o644) -> None:
        self._routed(container, lambda runtime: runtime.put_file(container, path, content, mode))

    # -- inventory and cleanup ------------------------------------------------

    def lab_names(self) -> set[str]:
        found, _ = self._on_all(lambda _, runtime: runtime.lab_names())
        return set().union(*found.values()) if found else set()

    def lab_running(self, lab: str) -> bool:
        found, _ = self._on_all(lambda _, runtime: runtime.lab_running(lab))
        return any(found.values())

    def lab_labels(self, lab: str) -> dict[str, str]:
        found, _ = self._on_all(lambda _, runtime: runtime.lab_labels(lab))
        return next((labels for labels in found.values() if labels), {})

    def labelled(self, lab: str) -> list[str]:
        found, _ = self._on_all(lambda _, runtime: runtime.labelled(lab))
        return sorted({name for names in found.values() for name in names})

    def labelled_by_host(self, lab: str) -> tuple[dict[str, list[str]], dict[str, str]]:
        return self._on_all(lambda _, runtime: runtime.labelled(lab))

    def shared_l2(self, image: str | None = None) -> tuple[bool, str]:
        """Whether all hosts share an L2 segment (see runtime/l2.py)."""
        return shared_l2(self.hosts, image or self.node_image())

    def host_answers(self, host: str) -> bool:
        try:
            self.hosts[host].client.ping()
            return True
        except (docker.errors.DockerException, OSError):
            return False

    def _on_all(
        self, work: Callable[[str, DockerRuntime], T]
    ) -> tuple[dict[str, T], dict[str, str]]:
        return on_all(self.hosts, work)

    def cleanup(self, lab: str) -> Cleanup:
        """Remove the lab from every reachable host; report the others (never raises for them)."""
        self._where = {k: v for k, v in self._where.items() if not k.startswith(f"{lab}-")}
        return clean_lab(self.hosts, self.manager, lab)

    def remove_lab(self, lab: str) -> int:
        """Remove the lab everywhere; raise HostUnreachable (after cleaning the rest) if a host is down."""
        result = self.cleanup(lab)
        if result.left and not result.unreachable:
            listed = "; ".join(f"{name} ({why})" for name, why in result.left.items())
            raise LabkitError(f"lab {lab!r}: could not remove {listed}")
        if result.unreachable:
            raise HostUnreachable(
                f"removed {result.removed} object(s) of lab {lab!r}, but "
                + unreachable_text(result.unreachable)
                + ": run `down` again once it answers"
            )
        return result.removed
