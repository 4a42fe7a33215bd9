"""L4 entry points: parsing as ingress-nginx's tcp/udp-services, rendering, LVS, checks."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from labkit.dataplane import ingress_haproxy, ingress_l4, ingress_nginx, keepalived_lvs
from labkit.dataplane.ingress_routes import RoutingTable, UpstreamServer
from labkit.errors import TopologyError
from labkit.topology.edge_model import Lvs
from labkit.topology.l4_entries import L4Target, parse_target
from labkit.topology.loader import parse_topology

SERVERS = (
    UpstreamServer(IPv4Address("10.244.1.2"), 9000),
    UpstreamServer(IPv4Address("10.244.2.2"), 9000),
)
TCP = ingress_l4.L4Entry(L4Target("TCP", 9000, "echo", "tcp"), SERVERS)
UDP = ingress_l4.L4Entry(L4Target("UDP", 9053, "echo", "udp"), SERVERS)


def _table(*entries: ingress_l4.L4Entry) -> RoutingTable:
    return RoutingTable(80, (), (), None, l4=entries)


def test_targets_are_namespace_service_port_as_the_configmaps_write_them():
    assert parse_target("default/echo:9000") == ("echo", "9000")
    assert parse_target("shop/api:http") == ("shop/api", "http")
    assert parse_target("echo:tcp") == ("echo", "tcp")
    with pytest.raises(ValueError):
        parse_target("echo")


def test_nginx_stream_block_loads_the_module_and_proxies_udp_one_reply_per_datagram():
    text = ingress_nginx.render(_table(TCP, UDP))
    assert text.startswith(f"load_module {ingress_l4.STREAM_MODULE};")
    stream = text[text.index("stream {") :]
    assert "listen 9000;" in stream and "listen 9053 udp;" in stream
    assert "server 10.244.1.2:9000 max_fails=0;" in stream and "proxy_responses 1;" in stream
    assert "load_module" not in ingress_nginx.render(_table())  # nothing L4: nothing loaded


def test_an_entry_without_endpoints_still_renders_and_fails_fast():
    empty = ingress_l4.L4Entry(TCP.target, ())
    assert "proxy_pass 127.0.0.1:1;" in "\n".join(ingress_l4.nginx_stream([empty]))


def test_haproxy_serves_tcp_entries_in_mode_tcp():
    text = ingress_haproxy.render(_table(TCP, UDP))
    assert "frontend l4-tcp-9000\n    mode tcp" in text and "bind :9000" in text
    assert "server 10.244.2.2-9000 10.244.2.2:9000" in text
    assert "l4-udp" not in text


def test_keepalived_virtual_servers_per_entry_in_the_lvs_mode():
    lines = keepalived_lvs.virtual_servers(IPv4Address("10.213.5.100"), [TCP, UDP], Lvs(mode="DR"))
    text = "\n".join(lines)
    assert "virtual_server 10.213.5.100 9000 {" in text and "lb_kind DR" in text
    assert text.count("TCP_CHECK") == 2  # TCP real servers are checked; UDP ones are not


BASE = """
name: t
nodes: {edge-1: {}, node-1: {}}
services:
  echo:
    selector: {app: echo}
    ports: [{name: tcp, port: 9000}, {name: udp, port: 9000, protocol: UDP}]
ingress:
  controller: CONTROLLER
  nodes: [edge-1]
"""


def test_checks_name_unknown_services_wrong_protocols_and_udp_with_haproxy():
    with pytest.raises(TopologyError) as caught:
        parse_topology(
            BASE.replace("CONTROLLER", "haproxy")
            + "  tcp: {9001: default/nope:1, 9002: echo:udp}\n  udp: {53: echo:udp}\n"
        )
    message = str(caught.value)
    assert "unknown service 'nope'" in message
    assert "no TCP port 'udp'" in message
    assert "haproxy has no UDP proxying" in message
    ok = parse_topology(
        BASE.replace("CONTROLLER", "nginx")
        + "  tcp: {9000: default/echo:tcp}\n  udp: {9053: echo:9000}\n"
    )
    assert ok.ingress is not None and ok.ingress.udp == {9053: "echo:9000"}
