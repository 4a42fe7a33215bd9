"""Handles on a live lab's nodes and pods: what tests and the CLI hold."""

from __future__ import annotations

from functools import cached_property
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from labkit.dataplane import pods as pod_plan
from labkit.dataplane.script import q
from labkit.runtime.docker import ExecResult

if TYPE_CHECKING:
    from labkit import probes
    from labkit.lab import Lab


class Endpoint:
    """Something that can send probes (a node or a pod) and be their target."""

    name: str
    lab: Lab

    @property
    def ip(self) -> IPv4Address:
        raise NotImplementedError

    @property
    def node(self) -> NodeHandle:
        raise NotImplementedError

    def exec(
        self, command: str, *, check: bool = True, timeout: float | None = None
    ) -> ExecResult:
        raise NotImplementedError

    # Probes, as methods so a test reads `client.ping(web)`.
    def ping(self, target: Target, **options: Any) -> probes.PingResult:
        from labkit import probes

        return probes.ping(self, target, **options)

    def tcp(self, target: Target, port: int, **options: Any) -> probes.TcpResult:
        from labkit import probes

        return probes.tcp_connect(self, target, port, **options)

    def udp(self, target: Target, port: int, **options: Any) -> probes.UdpResult:
        from labkit import probes

        return probes.udp_request(self, target, port, **options)

    def http(self, target: Target, port: int = 8080, path: str = "/", **options: Any) -> probes.HttpResult:
        from labkit import probes

        return probes.http_get(self, target, port, path, **options)

    def __str__(self) -> str:
        return self.name


Target = Endpoint | IPv4Address | str


class NodeHandle(Endpoint):
    def __init__(self, lab: Lab, name: str) -> None:
        self.lab = lab
        self.name = name
        self.container = f"{lab.name}-{name}"

    def __repr__(self) -> str:
        return f"<node {self.name} {self.ip}>"

    @property
    def ip(self) -> IPv4Address:
        """The node's address on its first underlay network."""
        return self.lab.addresses.node_ip(self.name)

    @property
    def ips(self) -> dict[str, IPv4Address]:
        return dict(self.lab.addresses.node_ips[self.name])

    @property
    def node(self) -> NodeHandle:
        return self

    @property
    def roles(self) -> list[str]:
        return list(self.lab.topology.nodes[self.name].roles)

    def exec(
        self, command: str | list[str], *, check: bool = True, timeout: float | None = None
    ) -> ExecResult:
        return self.lab.runtime.exec(self.container, command, check=check, timeout=timeout)

    def pods(self) -> list[PodHandle]:
        return [p for p in self.lab.pods() if p.node.name == self.name]

    @cached_property
    def host(self) -> Any:
        """A testinfra host on this node (`host.interface`, `host.socket`, ...)."""
        import testinfra

        return testinfra.get_host(f"docker://{self.container}")


class PodHandle(Endpoint):
    def __init__(self, lab: Lab, name: str) -> None:
        self.lab = lab
        self.name = name

    def __repr__(self) -> str:
        return f"<pod {self.name} {self.ip} on {self.node.name}>"

    @property
    def spec(self) -> Any:
        return self.lab.topology.pods[self.name]

    @property
    def ip(self) -> IPv4Address:
        return self.lab.addresses.pod_ips[self.name]

    @property
    def node(self) -> NodeHandle:
        return self.lab.node(self.spec.node)

    @property
    def namespace(self) -> str:
        return str(self.spec.namespace)

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.spec.labels)

    def exec(
        self, command: str, *, check: bool = True, timeout: float | None = None
    ) -> ExecResult:
        """Run a shell command inside the pod's network namespace."""
        return self.node.exec(
            f"ip netns exec {q(self.name)} sh -c {q(command)}", check=check, timeout=timeout
        )

    # -- the pod's containers (processes) ---------------------------------

    def containers(self) -> dict[str, bool]:
        """Each container of the pod and whether its process is alive."""
        out = self.node.exec(pod_plan.containers_alive_script(self.name)).stdout
        return {name: state == "up" for name, state in (line.split() for line in out.splitlines())}

    def ready(self) -> bool:
        """Ready as a Service endpoint: every container alive (a pod with none is ready)."""
        return all(self.containers().values())

    def kill(self, container: str | None = None, signal: str = "KILL") -> None:
        """Kill the pod's processes; its namespace and IP stay."""
        self.node.exec(pod_plan.kill_containers_script(self.name, container, signal))
        self.lab.pods_changed([self.name])

    def restart(self, container: str | None = None) -> None:
        kill = pod_plan.kill_containers_script(self.name, container)
        start = pod_plan.start_containers_script(self.lab.pod_spec(self.name), container)
        self.node.exec(f"{kill}\n{start}")  # one round trip
        self.lab.pods_changed([self.name])

    def logs(self, container: str | None = None) -> str:
        pattern = f"{pod_plan.LOG_DIR}/{self.name}/{container or '*'}.log"
        return self.node.exec(f"cat {pattern} 2>/dev/null || true").stdout
