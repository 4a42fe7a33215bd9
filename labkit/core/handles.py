"""Handles on a live lab's nodes and pods: what tests and the CLI hold."""

from __future__ import annotations

from functools import cached_property
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from labkit.core import probes
from labkit.core.endpoint import Endpoint, Target
from labkit.dataplane import pods as pod_plan
from labkit.dataplane import readiness as readiness_plan
from labkit.dataplane.script import in_netns
from labkit.dataplane.vxlan import underlay_device
from labkit.runtime.base import ExecResult
from labkit.topology.model import slug

if TYPE_CHECKING:
    from labkit.core.cluster import Cluster


class Probing:
    """Probes as methods, so a test reads `client.ping(web)`."""

    name: str

    def ping(self: Endpoint, target: Target, **options: Any) -> probes.PingResult:
        return probes.ping(self, target, **options)

    def tcp(self: Endpoint, target: Target, port: int, **options: Any) -> probes.TcpResult:
        return probes.tcp_connect(self, target, port, **options)

    def udp(self: Endpoint, target: Target, port: int, **options: Any) -> probes.UdpResult:
        return probes.udp_request(self, target, port, **options)

    def http(
        self: Endpoint, target: Target, port: int = 8080, path: str = "/", **options: Any
    ) -> probes.HttpResult:
        return probes.http_get(self, target, port, path, **options)

    def __str__(self) -> str:
        return self.name


class NodeHandle(Probing):
    def __init__(self, cluster: Cluster, name: str) -> None:
        self.cluster = cluster
        self.name = name
        self.container = cluster.container(name)

    def __repr__(self) -> str:
        return f"<node {self.name} {self.ip}>"

    @property
    def ip(self) -> IPv4Address:
        """The node's address on its first underlay network."""
        return self.cluster.addresses.node_ip(self.name)

    @property
    def ips(self) -> dict[str, IPv4Address]:
        return dict(self.cluster.addresses.node_ips[self.name])

    @property
    def node(self) -> NodeHandle:
        return self

    @property
    def roles(self) -> list[str]:
        return list(self.cluster.topology.nodes[self.name].roles)

    def exec(
        self, command: str | list[str], *, check: bool = True, timeout: float | None = None
    ) -> ExecResult:
        return self.cluster.runtime.exec(self.container, command, check=check, timeout=timeout)

    def on_node(self, command: str) -> str:
        """The shell command this node runs for `command` (itself: as a pod's, its namespace's)."""
        return command

    def pods(self) -> list[PodHandle]:
        """The workloads on this node (as `lab.pods()`: not the addons')."""
        return [p for p in self.cluster.workloads() if p.node.name == self.name]

    def link(self, network: str | None = None) -> Link:
        """The node's underlay interface on `network` (default: its first)."""
        return Link(self, network)

    def links(self) -> list[Link]:
        return [Link(self, network) for network in self.cluster.addresses.node_ips[self.name]]

    @cached_property
    def host(self) -> Any:
        """A testinfra host on this node (`host.interface`, `host.socket`, ...)."""
        import testinfra

        return testinfra.get_host(f"docker://{self.container}")


class Link:
    """A node's underlay interface: what faults act on (as Mininet's `Intf`)."""

    def __init__(self, node: NodeHandle, network: str | None) -> None:
        self.node = node
        self.network = network
        self.device = underlay_device(node.cluster.addresses.node_ip(node.name, network))

    def __repr__(self) -> str:
        return f"<link {self.node.name}:{self.device}>"

    def down(self) -> None:
        self.node.exec(f"ip link set dev {self.device} down")

    def up(self) -> None:
        self.node.exec(f"ip link set dev {self.device} up")

    def mac(self) -> str:
        return self.node.exec(f"cat /sys/class/net/{self.device}/address").stdout.strip()

    def shape(self, qdisc: str) -> None:
        """Set the interface's root qdisc (tbf for a rate, netem for delay/loss)."""
        self.node.exec(f"tc qdisc replace dev {self.device} root {qdisc}")

    def clear_shaping(self) -> None:
        self.node.exec(f"tc qdisc del dev {self.device} root 2>/dev/null || true")


class PodHandle(Probing):
    def __init__(self, cluster: Cluster, name: str) -> None:
        self.cluster = cluster
        self.name = name

    def __repr__(self) -> str:
        return f"<pod {self.name} {self.ip} on {self.node.name}>"

    @property
    def spec(self) -> Any:
        return self.cluster.topology.pods[self.name]

    @property
    def ip(self) -> IPv4Address:
        return self.cluster.addresses.pod_ips[self.name]

    @property
    def node(self) -> NodeHandle:
        return self.cluster.node(self.spec.node)

    @property
    def namespace(self) -> str:
        return str(self.spec.namespace)

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.spec.labels)

    def exec(self, command: str, *, check: bool = True, timeout: float | None = None) -> ExecResult:
        """Run a shell command inside the pod's network namespace (a hostNetwork pod's: the node's)."""
        return self.node.exec(self.on_node(command), check=check, timeout=timeout)

    def on_node(self, command: str) -> str:
        """The shell command its node runs for `command` in this pod."""
        return command if self.spec.host_network else in_netns(slug(self.name), command)

    # -- the pod's containers (processes) ---------------------------------

    def containers(self) -> dict[str, bool]:
        """Each container of the pod and whether its process is alive."""
        out = self.node.exec(pod_plan.containers_alive_script(self.name)).stdout
        return {name: state == "up" for name, state in (line.split() for line in out.splitlines())}

    def ready(self) -> bool:
        """Ready as a Service endpoint: every container alive (a pod with none is ready)
        and every readinessProbe it has passing."""
        spec = self.spec
        probes = {}
        if spec.readiness:
            probes[self.name] = readiness_plan.probe_command(self.name, spec, self.ip)
        host = [self.name] if spec.host_network else []
        output = self.node.exec(readiness_plan.readiness_script([self.name], probes, host)).stdout
        expected = {self.name: set(self.cluster.pod_spec(self.name).containers())}
        return self.name in readiness_plan.parse_readiness(output, expected, probes)

    def kill(self, container: str | None = None, signal: str = "KILL") -> None:
        """Kill the pod's processes; its namespace and IP stay."""
        self.node.exec(pod_plan.kill_containers_script(self.name, container, signal))
        self.cluster.pods_changed([self.name])

    def restart(self, container: str | None = None) -> None:
        kill = pod_plan.kill_containers_script(self.name, container)
        start = pod_plan.start_containers_script(self.cluster.pod_spec(self.name), container)
        self.node.exec(f"{kill}\n{start}")  # one round trip
        self.cluster.pods_changed([self.name])

    def logs(self, container: str | None = None) -> str:
        pattern = f"{pod_plan.LOG_DIR}/{slug(self.name)}/{container or '*'}.log"
        return self.node.exec(f"cat {pattern} 2>/dev/null || true").stdout
