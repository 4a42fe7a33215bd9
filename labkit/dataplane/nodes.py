"""What each node must run to be built: knobs, routes, backend, its pods. Pure."""

from __future__ import annotations

from collections.abc import Iterable

from labkit.dataplane import backends
from labkit.dataplane import pods as pod_plan
from labkit.topology.addressing import Addresses
from labkit.topology.model import Topology


def pods_on(topology: Topology, node: str) -> list[str]:
    return [name for name, pod in topology.pods.items() if pod.node == node]


def pod_spec(topology: Topology, addresses: Addresses, name: str) -> pod_plan.PodSpec:
    """What the pod scripts need of pod `name`: node, namespace, IP, commands, host ports."""
    pod = topology.pods[name]
    mappings = tuple(
        {"hostPort": p.host_port, "containerPort": p.port, "protocol": p.protocol.lower()}
        for p in pod.ports
        if p.host_port
    )
    return pod_plan.PodSpec(
        name=name,
        node=pod.node,
        namespace=pod.namespace,
        ip=addresses.pod_ips[name],
        commands=tuple(pod.run),
        port_mappings=mappings,
    )


def node_scripts(
    topology: Topology,
    addresses: Addresses,
    only: Iterable[str] | None = None,
    underlay_mtu: int = backends.UNDERLAY_MTU,
) -> dict[str, str]:
    """Per node, the whole script that builds it: knobs, routes, backend, pods."""
    wanted = set(only) if only is not None else set(topology.nodes)
    backend = backends.backend_scripts(topology, addresses, underlay_mtu)
    underlay = backends.underlay_scripts(topology, addresses)
    mtu = backends.pod_mtu(topology, underlay_mtu)
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
            parts += [
                pod_plan.pod_add_script(pod_spec(topology, addresses, p))
                for p in pods_on(topology, node)
            ]
        scripts[node] = "\n".join(part for part in parts if part)
    return scripts
