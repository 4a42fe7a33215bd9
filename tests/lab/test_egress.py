"""Traffic that leaves the cluster: pods reach an external node masqueraded.

The external node `outside` runs its own echo server (`nodes.outside.run`)
and has no route to the pod network: the reply comes back because the
pod's node masqueraded the request (ip-masq-agent's layout).
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.topology("cluster-edge")


def test_a_pod_reaches_an_external_node_which_sees_the_nodes_address(lab):
    client, outside = lab.pod("client"), lab.node("outside")
    assert "10.244." not in outside.exec("ip route").stdout  # no hand-made route back
    reply = client.http(outside, 8080)
    assert reply.ok and reply.pod == "outside", reply
    assert reply.client_ip == str(client.node.ip)
    udp = client.udp(outside, 9000)
    assert udp.ok and str(client.node.ip) in udp.reply, udp


def test_traffic_inside_the_cluster_keeps_the_pods_address(lab):
    client = lab.pod("client")
    assert client.http(lab.pod("web-1"), 8080).client_ip == str(client.ip)  # across nodes
    assert client.http(lab.service("web-svc").vip, 80).client_ip == str(client.ip)  # a Service


def test_a_non_masquerade_cidr_keeps_the_pods_address_and_loses_the_reply(lab):
    client, outside = lab.pod("client"), lab.node("outside")
    assert "IP-MASQ" in client.node.exec("iptables -t nat -S POSTROUTING").stdout
    underlay = str(lab.addresses.underlay_subnets["underlay"])
    try:
        lab.egress.set(non_masquerade_cidrs=[underlay])
        assert underlay in lab.egress.non_masquerade_cidrs()
        # The pod's own address reaches `outside`, which has no route back to it.
        assert not client.http(outside, 8080, timeout=2).ok
    finally:
        lab.egress.set(non_masquerade_cidrs=[])
    assert client.http(outside, 8080).client_ip == str(client.node.ip)
