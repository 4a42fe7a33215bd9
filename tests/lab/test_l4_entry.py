"""L4 entry points on the edge: TCP and UDP ports behind the VRRP VIP, forwarded
to a Service's endpoints by nginx `stream` (as ingress-nginx's tcp-services and
udp-services ConfigMaps declare them); keepalived + LVS where IPVS exists."""

from __future__ import annotations

import pytest
from waits import holds

from labkit import FeatureMissing, Lab, load_topology
from labkit.runtime import features
from labkit.topology.model import Topology

pytestmark = pytest.mark.topology("cluster-edge")

VIP = "10.213.8.100"
WEB = {"web-0", "web-1"}


def _answered_by(reply: str) -> str:
    return reply.split()[0] if reply else ""


def test_a_tcp_port_on_the_vip_reaches_the_services_endpoints(lab):
    outside = lab.node("outside")
    lab.vrrp.wait_holder()
    seen = set()
    for _ in range(8):
        result = outside.tcp(VIP, 9000, payload="hello")
        assert result.ok, result
        seen.add(_answered_by(result.reply))
    assert seen == WEB  # balanced over both endpoints


def test_a_udp_port_on_the_vip_gets_one_reply_per_datagram(lab):
    outside = lab.node("outside")
    replies = {_answered_by(outside.udp(VIP, 9053).reply) for _ in range(6)}
    assert replies <= WEB and replies, replies


def _answering(lab, count: int = 8) -> set[str]:
    outside = lab.node("outside")
    return {_answered_by(outside.tcp(VIP, 9000, payload="x").reply) for _ in range(count)}


def test_l4_entries_follow_the_endpoints(lab):
    web1 = lab.pod("web-1")
    web1.kill()
    try:  # the proxy reloads; its old workers finish what they hold
        holds(
            lambda: _answering(lab) == {"web-0"}, within=20, what="only web-0 behind the TCP entry"
        )
    finally:
        web1.restart()
    holds(lambda: _answering(lab) == WEB, within=20, what="web-1 back behind the TCP entry")


def test_l4_entries_survive_the_loss_of_the_edge_proxy(lab):
    outside = lab.node("outside")
    lab.vrrp.wait_holder("edge-1")
    lab.ingress.stop_proxy("edge-1")
    try:
        lab.vrrp.wait_holder("edge-2")  # its health check failed: the VIP moved
        assert outside.tcp(VIP, 9000, payload="x").ok and outside.udp(VIP, 9053).ok
    finally:
        lab.ingress.start_proxy("edge-1")
        lab.vrrp.wait_holder("edge-1")


def test_the_http_rules_still_serve_beside_the_l4_ports(lab):
    assert lab.node("outside").http(VIP, 80).pod in WEB


def test_keepalived_lvs_is_refused_without_ipvs_naming_the_reason(tmp_path):
    """Never faked: without IPVS a topology asking for LVS is refused before anything is made."""
    if features.has("ipvs"):
        pytest.skip("this kernel has IPVS: the LVS pair itself is not covered by a lab test yet")
    document = load_topology("cluster-edge").model_dump(
        mode="json", exclude_none=True, by_alias=True
    )
    document["name"] = "cluster-edge-lvs"
    document["networks"]["underlay"]["subnet"] = "10.213.9.0/24"  # beside the shared lab's
    document["vrrp"]["vip"] = "10.213.9.100"
    document["ingress"]["lvs"] = {"mode": "DR"}
    with pytest.raises(FeatureMissing, match="ipvs") as caught:
        Lab.up(Topology.model_validate(document))
    assert features.missing_reason("ipvs") in str(caught.value)
