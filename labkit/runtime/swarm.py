"""The Swarm runtime: one lab over several Docker hosts that form a Swarm.

Underlay networks are Swarm `attachable` `overlay` networks, `internal`,
created once on a manager with the planned subnet. Node containers stay plain
containers (privileged or the capability fallback, as on one host), created
on the host that placement gives them and attached to the overlays with
static IPs. Everything else (exec, files, start/stop) is routed to the node's
host; inventory and cleanup run on every host in parallel, and a host that
does not answer is reported without stopping the cleanup of the others.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, ip_interface
from typing import Any, TypeVar

import docker
import docker.errors
import docker.tls

from labkit.concurrency import parallel
from labkit.errors import LabkitError, UsageError
from labkit.runtime.base import (
    LAB_LABEL,
    NETWORK_LABEL,
    ExecResult,
    NodeMode,
    network_name,
)
from labkit.runtime.docker import UNCONFINED, DockerRuntime
from labkit.topology.inventory import Host, Inventory

HOST_LABEL = "labkit.host"
T = TypeVar("T")

# Interfaces that are Docker's or a container's own, not a host's segment.
NOT_A_SEGMENT = ("lo", "docker", "br-", "veth", "vx-", "vxlan", "ov-", "cni", "flannel")


class HostUnreachable(LabkitError):
    """One or more hosts did not answer; what could be done on the others was done."""


class HostLost(LabkitError):
    """The host of a node stopped answering mid-lab: its nodes are lost, the rest works."""


@dataclass(frozen=True)
class Cleanup:
    removed: int
    unreachable: dict[str, str] = field(default_factory=dict)  # host -> reason
    left: dict[str, str] = field(default_factory=dict)  # network -> why it is still there


def connect_host(host: Host, timeout: int = 120) -> docker.DockerClient:
    """A client for one hosts-file entry (TLS for tcp://, the system ssh for ssh://)."""
    if host.scheme == "tcp":
        assert host.tls is not None  # the inventory refuses plain tcp://
        tls = docker.tls.TLSConfig(
            client_cert=(host.tls.cert, host.tls.key),
            ca_cert=host.tls.ca,
            verify=host.tls.verify,
        )
        return docker.DockerClient(base_url=host.url, tls=tls, timeout=timeout)
    return docker.DockerClient(
        base_url=host.url, timeout=timeout, use_ssh_client=host.scheme == "ssh"
    )


def _reason(error: BaseException) -> str:
    text = getattr(error, "explanation", None) or str(error) or type(error).__name__
    return str(text).splitlines()[0][:300]


def form_swarm(
    clients: Sequence[docker.DockerClient], addresses: Sequence[str], managers: int = 1
) -> None:
    """Init a swarm on the first engine, join the rest (the first `managers` as managers)."""
    first = clients[0]
    first.swarm.init(advertise_addr=addresses[0], listen_addr=f"{addresses[0]}:2377")
    first.swarm.reload()
    tokens = first.swarm.attrs["JoinTokens"]
    remote = f"{addresses[0]}:2377"

    def join(index: int) -> None:
        token = tokens["Manager"] if index < managers else tokens["Worker"]
        clients[index].swarm.join(
            remote_addrs=[remote],
            join_token=token,
            advertise_addr=addresses[index],
            listen_addr=f"{addresses[index]}:2377",
        )

    parallel(join, range(1, len(clients)))


def _has(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def ship_image(
    source: docker.DockerClient, targets: Sequence[docker.DockerClient], tag: str
) -> int:
    """Copy image `tag` by save/load to each target that lacks it; how many got it.

    One target: the save stream goes straight into load. Several: saved once to
    a file, then loaded into all in parallel (one save instead of N).
    """
    missing = [target for target in targets if not _has(target, tag)]
    if not missing:
        return 0
    if len(missing) == 1:
        missing[0].api.load_image(source.api.get_image(tag, chunk_size=1 << 20), quiet=True)
    else:
        with tempfile.NamedTemporaryFile(dir="/var/tmp", prefix="labkit-image-") as archive:
            for chunk in source.api.get_image(tag, chunk_size=1 << 20):
                archive.write(chunk)
            archive.flush()

            def load(target: docker.DockerClient) -> None:
                with open(archive.name, "rb") as own:  # an offset of its own per thread
                    target.api.load_image(iter(lambda: own.read(1 << 20), b""), quiet=True)

            parallel(load, missing)
    for target in missing:
        target.images.get(tag)  # raises if a load did not give the tag
    return len(missing)


def shared_segments(addresses: Mapping[str, Sequence[tuple[str, str]]]) -> list[IPv4Network]:
    """Subnets on which every host has an interface (host -> [(interface, address/prefix)]).

    Pure: a candidate for a shared L2 segment, which an ARP exchange then confirms.
    Docker's and containers' own interfaces are left out (every host has the same
    docker_gwbridge subnet, which is no shared segment).
    """
    per_host = []
    for entries in addresses.values():
        subnets = {
            ip_interface(address).network
            for interface, address in entries
            if not interface.startswith(NOT_A_SEGMENT) and ":" not in address
        }
        per_host.append({s for s in subnets if isinstance(s, IPv4Network) and s.prefixlen < 32})
    if not per_host:
        return []
    common = set.intersection(*per_host)
    return sorted(common)


ARP_PROBE = r"""
import socket, struct, sys, time
iface, source, target = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((iface, 0)); s.settimeout(0.3)
mac = s.getsockname()[4]
frame = b"\xff" * 6 + mac + b"\x08\x06" + struct.pack(
    "!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, socket.inet_aton(source), b"\0" * 6,
    socket.inet_aton(target))
deadline = time.time() + 2
while time.time() < deadline:
    s.send(frame)
    try:
        while True:
            data = s.recv(64)
            if data[20:22] == b"\0\x02" and data[28:32] == socket.inet_aton(target):
                print(data[22:28].hex()); sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)
"""

HOST_ADDRESSES = "ip -j -4 addr show up"


class SwarmRuntime:
    """The Runtime protocol over several engines (host name -> DockerRuntime) in one swarm."""

    def __init__(
        self,
        hosts: Mapping[str, DockerRuntime],
        placement: Mapping[str, str] | None = None,
        *,
        image_source: DockerRuntime | None = None,
    ) -> None:
        if not hosts:
            raise UsageError("a multi-host runtime needs at least one host")
        self.hosts = dict(hosts)
        self.placement = dict(placement or {})  # node -> host
        self.image_source = image_source
        self._where: dict[str, str] = {}  # container -> host
        self._lock = threading.Lock()
        self._manager: str | None = None

    @classmethod
    def from_inventory(
        cls,
        inventory: Inventory,
        placement: Mapping[str, str] | None = None,
        *,
        image_source: DockerRuntime | None = None,
    ) -> SwarmRuntime:
        hosts = {name: DockerRuntime(connect_host(host)) for name, host in inventory.hosts.items()}
        return cls(hosts, placement or inventory.nodes, image_source=image_source)

    # -- hosts --------------------------------------------------------------

    def _on_all(
        self, work: Callable[[str, DockerRuntime], T]
    ) -> tuple[dict[str, T], dict[str, str]]:
        """Run `work` on every host in parallel: (results, unreachable host -> reason)."""

        def one(name: str) -> tuple[str, T | None, str]:
            try:
                return name, work(name, self.hosts[name]), ""
            except (docker.errors.DockerException, LabkitError, OSError) as error:
                return name, None, _reason(error)

        results: dict[str, T] = {}
        failures: dict[str, str] = {}
        for name, value, reason in parallel(one, list(self.hosts)):
            if reason:
                failures[name] = reason
            else:
                results[name] = value  # type: ignore[assignment]
        return results, failures

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
        """The host that runs `container` (remembered on create, else looked up everywhere)."""
        if container in self._where:
            return self._where[container]
        found, _ = self._on_all(
            lambda _, runtime: bool(
                runtime.client.api.containers(all=True, filters={"name": f"^/{container}$"})
            )
        )
        for name, present in found.items():
            if present:
                self._where[container] = name
                return name
        raise LabkitError(f"no container {container!r} on any host: is the lab up?")

    def _routed(self, container: str, work: Callable[[DockerRuntime], T]) -> T:
        """Run `work` on the container's host; a host that stopped answering is HostLost."""
        host = self.host_of(container)
        try:
            return work(self.hosts[host])
        except (docker.errors.DockerException, OSError) as error:
            if isinstance(error, docker.errors.APIError):
                raise
            raise HostLost(
                f"{container} is lost: its host {host!r} does not answer ({_reason(error)})"
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
        found, failures = self._on_all(lambda _, runtime: runtime.taken_subnets())
        if failures:
            raise HostUnreachable(_unreachable_text(failures))
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
            raise HostUnreachable(_unreachable_text(failures))
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
            raise HostUnreachable(_unreachable_text(failures))
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

    def create_network(self, lab: str, network: str, subnet: IPv4Network) -> str:
        """An attachable, internal overlay, once, on a manager: every host sees the same one."""
        name = network_name(lab, network)
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(subnet))])
        self.hosts[self.manager()].client.networks.create(
            name,
            driver="overlay",
            attachable=True,
            internal=True,  # nothing a lab sends leaves the overlay
            ipam=ipam,
            labels={LAB_LABEL: lab, NETWORK_LABEL: network},
            check_duplicate=True,
        )
        return name

    def create_node(
        self,
        lab: str,
        node: str,
        image: str,
        networks: Mapping[str, IPv4Address],
        extra_labels: Mapping[str, str] | None = None,
    ) -> str:
        host = self._host_for_node(node)
        labels = {HOST_LABEL: host, **(extra_labels or {})}
        name = self.hosts[host].create_node(lab, node, image, networks, labels)
        self._where[name] = host
        return name

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

    def put_file(self, container: str, path: str, content: str | bytes, mode: int = 0o644) -> None:
        self._routed(container, lambda runtime: runtime.put_file(container, path, content, mode))

    # -- inventory and cleanup ------------------------------------------------

    def lab_names(self) -> set[str]:
        found, _ = self._on_all(lambda _, runtime: runtime.lab_names())
        return set().union(*found.values()) if found else set()

    def lab_running(self, lab: str) -> bool:
        found, _ = self._on_all(lambda _, runtime: runtime.lab_running(lab))
        return any(found.values())

    def labelled(self, lab: str) -> list[str]:
        found, _ = self._on_all(lambda _, runtime: runtime.labelled(lab))
        return sorted({name for names in found.values() for name in names})

    def labelled_by_host(self, lab: str) -> tuple[dict[str, list[str]], dict[str, str]]:
        return self._on_all(lambda _, runtime: runtime.labelled(lab))

    def cleanup(self, lab: str) -> Cleanup:
        """Remove the lab from every reachable host; report the others (never raises for them).

        Containers first (on their hosts), then the overlays on a manager: a
        swarm network can only be removed there, once nothing is attached.
        """

        def containers(_: str, runtime: DockerRuntime) -> int:
            api = runtime.client.api
            ids = [
                c["Id"] for c in api.containers(all=True, filters={"label": f"{LAB_LABEL}={lab}"})
            ]

            def remove(container_id: str) -> int:
                try:
                    api.remove_container(container_id, force=True, v=True)
                    return 1
                except docker.errors.NotFound:
                    return 0

            return sum(parallel(remove, ids))

        counts, unreachable = self._on_all(containers)
        removed = sum(counts.values())
        self._where = {k: v for k, v in self._where.items() if not k.startswith(f"{lab}-")}

        left: dict[str, str] = {}  # network -> why it could not be removed

        def networks(runtime: DockerRuntime, scopes: tuple[str, ...]) -> int:
            api = runtime.client.api
            gone = 0
            for item in api.networks(filters={"label": f"{LAB_LABEL}={lab}"}):
                if item.get("Scope", "local") not in scopes:
                    continue
                try:
                    api.remove_network(item["Id"])
                    gone += 1
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError as error:  # e.g. still attached on a lost host
                    left[item["Name"]] = _reason(error)
            return gone

        try:
            # Swarm networks on a manager only (a worker's copy goes with them).
            removed += networks(self.hosts[self.manager()], ("swarm",))
        except (HostUnreachable, docker.errors.DockerException, OSError) as error:
            unreachable.setdefault("manager", _reason(error))
        # Local networks (e.g. a macvlan per host) live on each host.
        local, failures = self._on_all(lambda _, runtime: networks(runtime, ("local",)))
        removed += sum(local.values())
        for name, why in failures.items():
            unreachable.setdefault(name, why)
        if not left and not unreachable:
            self._await_networks_gone(lab)
        return Cleanup(removed, unreachable, left)

    def _await_networks_gone(self, lab: str, timeout: float = 15.0) -> None:
        """A removed swarm network lingers a moment in each engine's list; wait it out."""
        selector = {"label": f"{LAB_LABEL}={lab}"}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left, _ = self._on_all(lambda _, runtime: runtime.client.api.networks(filters=selector))
            if not any(left.values()):
                return
            time.sleep(0.2)

    def remove_lab(self, lab: str) -> int:
        """Remove the lab everywhere; raise HostUnreachable (after cleaning the rest) if a host is down."""
        result = self.cleanup(lab)
        if result.left and not result.unreachable:
            listed = "; ".join(f"{name} ({why})" for name, why in result.left.items())
            raise LabkitError(f"lab {lab!r}: could not remove {listed}")
        if result.unreachable:
            raise HostUnreachable(
                f"removed {result.removed} object(s) of lab {lab!r}, but "
                + _unreachable_text(result.unreachable)
                + ": run `down` again once it answers"
            )
        return result.removed

    # -- the hosts' own network ---------------------------------------------

    def _host_addresses(self, image: str) -> dict[str, list[tuple[str, str]]]:
        def addresses(_: str, runtime: DockerRuntime) -> list[tuple[str, str]]:
            raw = _host_network_run(runtime, image, HOST_ADDRESSES, timeout=20)
            return [
                (link["ifname"], f"{entry['local']}/{entry['prefixlen']}")
                for link in json.loads(raw or "[]")
                for entry in link.get("addr_info", [])
            ]

        found, failures = self._on_all(addresses)
        if failures:
            raise HostUnreachable(_unreachable_text(failures))
        return found

    def shared_l2(self, image: str | None = None) -> tuple[bool, str]:
        """Whether all hosts share an L2 segment: a common subnet, confirmed by ARP replies.

        Each host's own network is read from a short-lived host-network container;
        the first host then ARPs for every other host's address on that subnet.
        """
        image = image or self.node_image()
        addresses = self._host_addresses(image)
        for subnet in shared_segments(addresses):
            on_subnet = {
                host: next(
                    (iface, str(ip_interface(a).ip))
                    for iface, a in entries
                    if ip_interface(a).network == subnet and not iface.startswith(NOT_A_SEGMENT)
                )
                for host, entries in addresses.items()
            }
            first, *others = list(on_subnet)
            iface, source = on_subnet[first]
            replies = {
                other: _host_network_run(
                    self.hosts[first], image,
                    ["python3", "-c", ARP_PROBE, iface, source, on_subnet[other][1]], timeout=10,
                ).strip()
                for other in others
            }  # fmt: skip
            if all(replies.values()):
                where = ", ".join(f"{h} {i} {a}" for h, (i, a) in on_subnet.items())
                return True, f"hosts share {subnet} at L2 (ARP answered): {where}"
        return False, "no subnet that every host is on answers ARP from the others"


def _host_network_run(
    runtime: DockerRuntime, image: str, command: str | list[str], *, timeout: float
) -> str:
    """Run a command in a short-lived container in the host's own network namespace."""
    argv = ["sh", "-c", command] if isinstance(command, str) else command
    container = runtime.client.containers.run(
        image, ["timeout", str(int(timeout)), *argv], detach=True, network_mode="host",
        cap_add=["NET_RAW", "NET_ADMIN"], security_opt=UNCONFINED, labels={LAB_LABEL: "probe"},
    )  # fmt: skip
    try:
        container.wait(timeout=timeout + 5)
        return bytes(container.logs(stdout=True, stderr=False)).decode(errors="replace")
    finally:
        container.remove(force=True)


def _unreachable_text(failures: Mapping[str, str]) -> str:
    listed = "; ".join(f"{name} ({why})" for name, why in failures.items())
    return f"host(s) not answering: {listed}"
