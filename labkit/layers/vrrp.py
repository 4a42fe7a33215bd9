"""VRRP in front of the edge: keepalived (VRRPv3, all nodes start BACKUP) holds
the floating VIP; a `vrrp_script` checks the local proxy, so a dead proxy gives
the VIP away on a live node. The Python API is `VrrpControl` (`lab.vrrp`).
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Interface
from typing import Any

from labkit.concurrency import parallel
from labkit.core.cluster import Cluster
from labkit.core.eventually import eventually
from labkit.dataplane import keepalived, keepalived_lvs
from labkit.dataplane.deploy import CHECK_FAILED, checked_deploy_script, start_or_reload
from labkit.errors import LabkitError, UsageError
from labkit.layers.base import BaseLayer
from labkit.layers.ingress import IngressConfigError, l4_entries
from labkit.runtime import features
from labkit.topology.model import Vrrp
from labkit.topology.validate import check_vrrp


def _vrrp(cluster: Cluster) -> Vrrp:
    if cluster.topology.vrrp is None:
        raise UsageError(f"lab {cluster.name} has no vrrp")
    return cluster.topology.vrrp


def _interface(cluster: Cluster, node: str, network: str) -> str:
    address = cluster.addresses.node_ip(node, network)
    out = cluster.node(node).exec(f"ip -o -4 addr show to {address}/32").stdout.split()
    if len(out) < 2:
        raise LabkitError(f"node {node} has no interface with {address} (network {network})")
    return out[1]


def vrrp_config(cluster: Cluster, node: str, interface: str) -> str:
    vrrp = _vrrp(cluster)
    subnet = cluster.addresses.underlay_subnets[vrrp.network]
    spec = keepalived.VrrpNode(
        name=node,
        interface=interface,
        priority=vrrp.priorities[node],
        vip=IPv4Interface(f"{vrrp.vip}/{subnet.prefixlen}"),
        advert_interval=vrrp.advert_interval,
        preempt=vrrp.preempt,
        router_id=vrrp.router_id,
    )
    ingress = cluster.topology.ingress
    check = (
        keepalived.HealthCheck(keepalived.proxy_check_command(ingress.port)) if ingress else None
    )
    text = keepalived.render(spec, check)
    if ingress is not None and ingress.lvs is not None:  # LVS in front of the L4 entries
        text += "\n".join(
            [*keepalived_lvs.virtual_servers(vrrp.vip, l4_entries(cluster), ingress.lvs), ""]
        )
    return text


def _install_keepalived(cluster: Cluster, node: str) -> None:
    """Write keepalived.conf (checked by `keepalived -t` first), then reload or start."""
    text = vrrp_config(cluster, node, _interface(cluster, node, _vrrp(cluster).network))
    script = checked_deploy_script(
        text, keepalived.CONFIG_PATH, keepalived.check_command, keepalived.RUNNING,
        keepalived.reload_command(), keepalived.start_command(),
    )  # fmt: skip
    result = cluster.node(node).exec(script, check=False, timeout=30)
    if result.exit_code == CHECK_FAILED:
        raise IngressConfigError(
            f"keepalived on {node} refused its configuration:\n{result.output}"
        )
    if not result.ok:
        raise LabkitError(f"keepalived on {node} did not start:\n{result.output}")


def start_keepalived(cluster: Cluster, node: str) -> None:
    cluster.node(node).exec(
        start_or_reload(keepalived.RUNNING, None, keepalived.start_command()), timeout=10
    )


def keepalived_running(cluster: Cluster, node: str) -> bool:
    return cluster.node(node).exec(keepalived.RUNNING, check=False).ok


def stop_keepalived(cluster: Cluster, node: str) -> None:
    """Stop keepalived on `node` (SIGTERM: a master hands the VIP over on its way out)."""
    cluster.node(node).exec(keepalived.stop_command(), timeout=10)

    def stopped() -> None:
        assert not keepalived_running(cluster, node), "keepalived still runs"

    eventually(stopped, within=10, what=f"keepalived on {node} to exit")


def vip_holders(cluster: Cluster) -> list[str]:
    """The nodes that have the VIP on an interface now (one, unless VRRP is split)."""
    vrrp = _vrrp(cluster)

    def holds(node: str) -> bool:
        result = cluster.node(node).exec(
            f"ip -o -4 addr show to {vrrp.vip}/32", check=False, timeout=10
        )
        return result.ok and bool(result.stdout.strip())

    def alive(node: str) -> bool:
        return cluster.runtime.is_running(cluster.node(node).container)

    nodes = [node for node in vrrp.priorities if alive(node)]
    return [node for node, held in zip(nodes, parallel(holds, nodes), strict=True) if held]


def wait_vip_holder(cluster: Cluster, node: str | None = None, within: float = 20.0) -> str:
    """Wait until exactly one node holds the VIP (`node`, if given); that node."""

    def check() -> str:
        holders = vip_holders(cluster)
        if len(holders) != 1 or (node is not None and holders[0] != node):
            raise AssertionError(f"VIP held by {holders or 'nobody'}")
        return holders[0]

    wanted = f"node {node}" if node else "one node"
    return eventually(check, within=within, every=0.2, what=f"the VIP held by {wanted}")


def set_vrrp(cluster: Cluster, **changes: Any) -> None:
    """Change the VRRP settings of a running cluster (advert_interval, preempt, priorities).

    Checked as the topology file would be; keepalived reloads its configuration.
    """
    vrrp = Vrrp.model_validate({**_vrrp(cluster).model_dump(), **changes})
    problems = list(check_vrrp(cluster.topology.model_copy(update={"vrrp": vrrp})))
    if problems:
        raise UsageError("; ".join(str(problem) for problem in problems))
    cluster.topology.vrrp = vrrp
    parallel(lambda node: _install_keepalived(cluster, node), list(vrrp.priorities))
    cluster.save()


def master_down_interval(vrrp: Vrrp, priority: int) -> float:
    """How long a backup waits without adverts before it takes over (RFC 5798)."""
    skew = (256 - priority) * vrrp.advert_interval / 256
    return 3 * vrrp.advert_interval + skew


def check_vip_subnet(cluster: Cluster) -> None:
    """With an unpinned subnet, the VIP can only be checked against the one `up` picked."""
    vrrp = cluster.topology.vrrp
    if vrrp is None or cluster.topology.networks[vrrp.network].subnet is not None:
        return  # a pinned subnet was checked with the topology
    picked = cluster.addresses.underlay_subnets[vrrp.network]
    if vrrp.vip not in picked:
        raise UsageError(
            f"vrrp.vip {vrrp.vip} is outside network {vrrp.network!r}, which would get "
            f"{picked} on this host; pin networks.{vrrp.network}.subnet to a subnet holding "
            "the VIP"
        )


def install_all(cluster: Cluster) -> None:
    vrrp = _vrrp(cluster)
    parallel(lambda node: _install_keepalived(cluster, node), list(vrrp.priorities))
    top = max(vrrp.priorities.values())
    wait_vip_holder(cluster, within=master_down_interval(vrrp, top) + 15)


class VrrpLayer(BaseLayer):
    name = "vrrp"

    def wanted(self, cluster: Cluster) -> bool:
        return cluster.topology.vrrp is not None

    def check(self, cluster: Cluster) -> None:
        check_vip_subnet(cluster)
        ingress = cluster.topology.ingress
        if ingress is not None and ingress.lvs is not None:
            features.require(
                "ipvs", f"ingress.lvs (keepalived virtual_server, lb_kind {ingress.lvs.mode})"
            )

    def apply(self, cluster: Cluster) -> None:
        install_all(cluster)

    def sync(self, cluster: Cluster, changed_pods: Sequence[str]) -> None:
        ingress = cluster.topology.ingress
        if changed_pods and ingress is not None and ingress.lvs is not None:
            install_all(cluster)  # the real servers follow the endpoints

    def describe(self, cluster: Cluster) -> dict[str, Any]:
        vrrp = _vrrp(cluster)
        return {
            "vrrp": {
                "vip": str(vrrp.vip),
                "network": vrrp.network,
                "priorities": dict(vrrp.priorities),
                "advert_interval": vrrp.advert_interval,
                "preempt": vrrp.preempt,
                "holders": vip_holders(cluster),
            }
        }


class VrrpControl:
    """VRRP of a running lab (`lab.vrrp`)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def holders(self) -> list[str]:
        return vip_holders(self.cluster)

    def wait_holder(self, node: str | None = None, within: float = 20.0) -> str:
        return wait_vip_holder(self.cluster, node, within)

    def set(self, **changes: Any) -> None:
        set_vrrp(self.cluster, **changes)

    def start_keepalived(self, node: str) -> None:
        start_keepalived(self.cluster, node)

    def stop_keepalived(self, node: str) -> None:
        stop_keepalived(self.cluster, node)

    def keepalived_running(self, node: str) -> bool:
        return keepalived_running(self.cluster, node)

    def master_down_interval(self, priority: int | None = None) -> float:
        vrrp = _vrrp(self.cluster)
        return master_down_interval(
            vrrp, priority if priority is not None else max(vrrp.priorities.values())
        )
