"""What each node must run to be built: knobs, routes, backend, its pods, its servers. Pure."""

from __future__ import annotations

from collections.abc import Iterable

from labkit.dataplane import backends, dns, egress, kube_dns
from labkit.dataplane import pods as pod_plan
from labkit.topology.addressing import Addresses
from labkit.topology.model import Topology
from labkit.topology.services_alloc import dns_vip


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
        port_mappings=() if pod.host_network else mappings,
        host_network=pod.host_network,
    )


def node_scripts(
    topology: Topology,
    addresses: Addresses,
    only: Iterable[str] | None = None,
    engine_mtu: int | None = None,
) -> dict[str, str]:
    """Per node, the whole script that builds it: knobs, routes, backend, pods."""
    wanted = set(only) if only is not None else set(topology.nodes)
    # The backend fits in the smallest MTU: the topology's networks', or the engine's.
    backend = backends.backend_scripts(
        topology, addresses, backends.underlay_mtu(topology, engine_mtu)
    )
    underlay = backends.underlay_scripts(topology, addresses)
    mtu = backends.pod_mtu(topology, engine_mtu)
    scripts: dict[str, str] = {}
    for node in topology.nodes:
        if node not in wanted:
            continue
        parts = [underlay.get(node, "")]
        if node in addresses.pod_subnets:
            subnet = addresses.pod_subnets[node]
            parts.append(pod_plan.node_setup_script(subnet, mtu, topology.cluster.cni_plugin))
        # Routers take part in some backends too (bgp: they learn the pod subnets).
        parts.append(backend.get(node, ""))
        if node in addresses.pod_subnets:
            specs = [pod_spec(topology, addresses, p) for p in pods_on(topology, node)]
            parts += _resolv_conf_lines(topology, specs)
            if specs:
                parts.append(pod_plan.pods_add_script(specs))
        if node in addresses.pod_subnets and topology.cluster.masquerade.enabled:
            parts.append(egress.masquerade_script(topology.cluster, addresses.pod_subnets[node]))
        if topology.nodes[node].run:
            parts.append(egress.node_run_script(topology.nodes[node].run))
        scripts[node] = "\n".join(part for part in parts if part)
    return scripts


def _resolv_conf_lines(topology: Topology, specs: list[pod_plan.PodSpec]) -> list[str]:
    """Each pod's resolv.conf as the kubelet writes it, before its processes start
    (`ip netns exec` mounts it only for processes started after it exists)."""
    if not kube_dns.present(topology):
        return []
    pods = {spec.name: spec.namespace for spec in specs if not spec.host_network}
    return dns.pod_resolv_lines(dns_vip(topology.cluster), pods)
