"""The same topologies and checks as on one host, on a 3-host sandbox (Docker Swarm).

Every backend's pod matrix and its MTU across hosts, a Service VIP, NodePort
and DNS with endpoints on every host, VRRP failover across hosts (true L2 by
macvlan, which the sandbox offers) and its refusal where the hosts file
offers none, a partition between hosts and its heal, a host lost mid-lab,
and a `down` that leaves nothing on any host.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from labkit import Lab, expect
from labkit.errors import LabkitError
from labkit.lab import lab_name_for
from labkit.runtime.fleet import HostLost, HostUnreachable
from labkit.runtime.sandbox import Sandbox, start_host, stop_host
from labkit.runtime.select import NeedsL2, runtime_for
from labkit.runtime.swarm import SwarmRuntime
from labkit.topology.loader import load_topology, resolve_topology_path


def lab_on(
    sandbox: Sandbox, topology: str, hosts_file: str | None = None, name: str | None = None
) -> Lab:
    path = resolve_topology_path(topology)
    runtime = runtime_for(
        hosts_file or str(sandbox.inventory), load_topology(path), source=str(path)
    )
    return Lab.up(str(path), runtime=runtime, name=name)


def hosts_of(lab: Lab) -> dict[str, str]:
    runtime = lab.runtime
    assert isinstance(runtime, SwarmRuntime)
    return {node.name: runtime.host_of(node.container) for node in lab.nodes()}


@pytest.mark.parametrize("backend", ["vxlan", "host-gw", "udp", "bgp"])
def test_every_backend_carries_pods_across_hosts_at_its_mtu(
    sandbox: Sandbox, backend, record_property
):
    lab = lab_on(sandbox, f"backend-{backend}")
    try:
        assert hosts_of(lab) == {"node-1": "h1", "node-2": "h2"}
        expect.reachable(lab.pods(), lab.pods(), within=30 if backend == "bgp" else 5)
        mtu = lab.cluster.pod_mtu
        record_property(f"{backend}_pod_mtu", mtu)
        assert mtu == 1450 - {"vxlan": 50, "udp": 28}.get(backend, 0)  # the overlay's 50 first
        client, web = lab.pod("client-1"), lab.pod("web-2")
        fits = client.ping(web, size=mtu - 28, dont_fragment=True, count=2)
        assert fits.loss == 0, f"{mtu - 28} bytes with DF set did not cross hosts: {fits}"
        assert not client.ping(web, size=mtu - 27, dont_fragment=True, count=1).ok
    finally:
        lab.down()


@pytest.fixture(scope="module")
def spread(sandbox: Sandbox) -> Iterator[Lab]:
    """The default topology, one node per host."""
    lab = lab_on(sandbox, "default")
    try:
        yield lab
    finally:
        lab.down()


def test_nodes_are_spread_in_file_order(spread: Lab):
    assert hosts_of(spread) == {"node-1": "h1", "node-2": "h2", "node-3": "h3"}


def test_service_vip_node_port_and_dns_across_hosts(spread: Lab):
    client = spread.pod("client")
    # By name: the cluster DNS, in kube-dns pods on other hosts, over UDP. A lost
    # datagram is retried by the pod's resolver after its 5 s timeout (glibc's
    # default), so a request by name is given the time for that retry.
    seen = {client.http("web", 80, timeout=12).pod for _ in range(30)}
    assert seen == {"web-1", "web-2", "web-3"}
    vip = spread.service("web").vip
    assert {client.http(vip, 80).pod for _ in range(30)} == seen
    for node in spread.nodes():
        assert client.http(node, 30080).pod.startswith("web-")


def test_a_partition_between_hosts_and_its_heal(spread: Lab):
    client, far = spread.pod("client"), spread.pod("web-3")  # h1 and h3
    fault = spread.faults.partition(["node-3"])
    try:
        assert not client.ping(far, count=2).ok
        assert client.ping(spread.pod("web-2"), count=2).loss == 0  # h1-h2 untouched
    finally:
        spread.faults.heal()
    assert fault.kind == "partition"
    expect.reachable([client], [far], within=10)


def test_vrrp_fails_over_across_hosts_on_true_l2(sandbox: Sandbox):
    lab = lab_on(sandbox, "ingress")
    try:
        vrrp = lab.topology.vrrp
        assert vrrp is not None
        master = max(vrrp.priorities, key=lambda n: vrrp.priorities[n])
        backup = min(vrrp.priorities, key=lambda n: vrrp.priorities[n])
        assert len({hosts_of(lab)[master], hosts_of(lab)[backup]}) == 2
        lab.vrrp.wait_holder(master)
        lab.vrrp.stop_keepalived(master)
        lab.vrrp.wait_holder(backup, within=20)
    finally:
        lab.down()


def test_vrrp_without_shared_l2_is_refused_before_anything_is_made(
    sandbox: Sandbox, tmp_path: Path
):
    document = yaml.safe_load(sandbox.inventory.read_text())
    document.pop("l2")
    no_l2 = tmp_path / "hosts.yaml"
    no_l2.write_text(yaml.safe_dump(document))
    with pytest.raises(
        NeedsL2, match=r"network 'underlay' carries VRRP .*a VIP and multicast do not"
    ):
        lab_on(sandbox, "ingress", str(no_l2))
    runtime = runtime_for(str(no_l2))
    assert not [name for name in runtime.lab_names() if name.endswith("ingress")]


def test_a_host_lost_mid_lab_then_down_on_every_host(sandbox: Sandbox):
    lab = lab_on(
        sandbox,
        "default",
        name=lab_name_for(load_topology(resolve_topology_path("default"))) + "-lost",
    )
    runtime = lab.runtime
    assert isinstance(runtime, SwarmRuntime)
    try:
        stop_host(sandbox.name, "h3")
        with pytest.raises(HostLost, match="node-3 is lost: its host 'h3'"):
            lab.node("node-3").exec("true")
        expect.reachable([lab.pod("client")], [lab.pod("web-1"), lab.pod("web-2")])
        from labkit.cli.hosts import describe_with_hosts

        nodes = {n["name"]: n for n in describe_with_hosts(lab)["nodes"]}
        assert nodes["node-3"]["lost"] and nodes["node-3"]["host"] == "h3"
        assert not nodes["node-1"]["lost"]
        with pytest.raises(HostUnreachable, match="h3"):
            lab.down()  # the others are cleaned, h3 is reported
        left, unreachable = runtime.labelled_by_host(lab.name)
        assert set(unreachable) == {"h3"}
        # No container is left on the hosts that answer; the overlay stays until h3 lets go.
        assert all(name.endswith("-underlay") for names in left.values() for name in names)
    finally:
        start_host(sandbox.name, "h3")
    lab.down()  # h3 answers again: its leftovers go too
    assert runtime.labelled(lab.name) == []
    for host in runtime.hosts.values():
        mine = {"label": f"labkit.lab={lab.name}"}
        assert host.client.api.containers(all=True, filters=mine) == []
        assert host.client.api.networks(filters=mine) == []


def test_unknown_pin_is_located(sandbox: Sandbox, tmp_path: Path):
    topology = tmp_path / "pinned.yaml"
    topology.write_text("name: pinned\nnodes:\n  node-1: {host: h9}\n")
    with pytest.raises(LabkitError, match=r"pinned.yaml:3:.*unknown host 'h9'"):
        runtime_for(str(sandbox.inventory), load_topology(topology), source=str(topology))
