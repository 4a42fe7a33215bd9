"""A topology's underlay MTU (`networks.X.mtu`) reaches the nodes' interfaces, and
the pods get it less the backend's overhead: no byte more crosses, none less."""

from __future__ import annotations

import pytest

from labkit.dataplane import backends, vxlan


@pytest.mark.topology("vxlan-jumbo")
class TestJumboUnderlay:
    def test_nodes_interfaces_take_the_network_s_mtu(self, lab):
        for node in ("node-1", "node-2"):
            assert "mtu 9000 " in lab.node(node).exec("ip link show eth0").stdout
        details = lab.node("node-1").exec(f"ip -d link show {vxlan.DEVICE}").stdout
        assert f"mtu {9000 - vxlan.OVERHEAD} " in details

    def test_the_largest_unfragmented_pod_packet_crosses_and_one_byte_more_is_refused(self, lab):
        mtu = backends.pod_mtu(lab.topology)
        assert mtu == 8950
        client, web = lab.pod("client-1"), lab.pod("web-2")
        assert f"mtu {mtu} " in client.exec("ip link show eth0").stdout
        largest = mtu - 28  # IPv4 20 + ICMP 8
        fits = client.ping(web, size=largest, dont_fragment=True, count=2)
        assert fits.loss == 0, f"{largest} bytes with DF set did not cross: {fits}"
        too_big = client.ping(web, size=largest + 1, dont_fragment=True, count=1)
        assert not too_big.ok, f"{largest + 1} bytes with DF set crossed"

    def test_a_node_to_node_jumbo_frame_crosses_the_underlay(self, lab):
        node_1, node_2 = lab.node("node-1"), lab.node("node-2")
        assert node_1.ping(node_2, size=9000 - 28, dont_fragment=True, count=2).loss == 0
