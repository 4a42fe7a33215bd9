"""Ingress and VRRP, decided: routing table, nginx.conf, haproxy.cfg,
keepalived.conf, the topology checks and the load client's analysis. Pure."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface

import pytest
from topology_problems import problems

from labkit.dataplane import ingress_haproxy, ingress_nginx, keepalived
from labkit.dataplane.ingress_routes import RoutingTable, UpstreamServer, routing_table
from labkit.load import LoadResult, Request, parse_result
from labkit.topology import parse_topology
from labkit.topology.model import Ingress, Service

SERVICES = {
    "web": Service.model_validate({"ports": [{"name": "http", "port": 80, "target_port": 8080}]}),
    "api": Service.model_validate({"ports": [{"port": 80, "target_port": 8080}]}),
}
RULES = {
    "nodes": ["edge-1"],
    "rules": [
        {"host": "a.example", "path": "/", "service": "web", "port": "http"},
        {"host": "a.example", "path": "/api/", "service": "api", "port": 80},
        {
            "host": "a.example",
            "path": "/api/v2",
            "path_type": "Exact",
            "service": "web",
            "port": 80,
        },
        {"path": "/status", "service": "api", "port": 80},
    ],
}


def ingress(*rules: dict[str, object], **options: object) -> dict[str, object]:
    """An ingress section with `rules` on edge node `e` (only the topology checks read nodes)."""
    return {"nodes": ["e"], "rules": list(rules), **options}


def server(ip: str, port: int = 8080) -> UpstreamServer:
    return UpstreamServer(IPv4Address(ip), port)


def table(
    ingress: dict[str, object] | None = None, **servers: list[UpstreamServer]
) -> RoutingTable:
    """`web=[...]` sets the servers of web's port http, `api=[...]` of api's port 80."""
    keys = {"web": ("web", "http"), "api": ("api", "80")}
    return routing_table(
        Ingress.model_validate(ingress or RULES),
        SERVICES,
        {keys[name]: found for name, found in servers.items()},
    )


# -- routing table -------------------------------------------------------------------


def test_routes_are_in_match_order_hosts_first():
    routes = [(r.host, r.path, r.exact, r.upstream) for r in table().routes]
    assert routes == [
        ("a.example", "/api/v2", True, "web-http"),
        ("a.example", "/api", False, "api-80"),  # Prefix: the trailing slash is dropped
        ("a.example", "/", False, "web-http"),
        (None, "/status", False, "api-80"),
    ]


def test_one_upstream_per_service_port_however_the_rule_names_it():
    rules = ingress(
        {"host": "a.example", "path": "/", "service": "web", "port": "http"},
        {"host": "b.example", "path": "/", "service": "web", "port": 80},
    )
    built = table(rules, web=[server("10.244.2.3"), server("10.244.2.2"), server("10.244.2.2")])
    assert [u.name for u in built.upstreams] == ["web-http"]
    assert [str(s) for s in built.upstreams[0].servers] == ["10.244.2.2:8080", "10.244.2.3:8080"]


# -- nginx ------------------------------------------------------------------------------

NGINX_BODY = """\
    upstream web-http {
        server 10.244.2.2:8080 max_fails=0;
        server 10.244.2.3:8080 max_fails=0;
        keepalive 32;
    }

    server {
        listen 80 default_server;
        server_name _;
        location = /status {
            return 503;
        }
        location /status/ {
            return 503;
        }
        location / {
            return 404 "default backend - 404\\n";
        }
    }

    server {
        listen 80;
        server_name a.example;
        location = /api/v2 {
            proxy_pass http://web-http;
        }
        location = /api {
            return 503;
        }
        location /api/ {
            return 503;
        }
        location / {
            proxy_pass http://web-http;
        }
    }
}
"""


def test_nginx_servers_per_host_prefix_as_exact_plus_slash_and_503_without_endpoints():
    text = ingress_nginx.render(table(web=[server("10.244.2.3"), server("10.244.2.2")]))
    assert text.endswith("\n\n" + NGINX_BODY)
    assert "pid /run/labkit/nginx.pid;" in text
    assert "proxy_next_upstream error timeout;" in text
    assert "worker_shutdown_timeout 10s;" in text


def test_nginx_default_backend_and_port():
    rules = ingress(
        {"host": "a.example", "path": "/x", "service": "api", "port": 80},
        port=8000,
        default_backend={"service": "web", "port": "http"},
    )
    text = ingress_nginx.render(
        table(rules, web=[server("10.244.2.2")], api=[server("10.244.3.2")])
    )
    assert text.count("listen 8000") == 2
    assert "listen 8000 default_server;" in text
    # Both servers end in the default backend, not in a 404.
    assert text.count("location / {\n            proxy_pass http://web-http;") == 2
    assert "return 404" not in text


def test_nginx_service_upstream_is_the_vip():
    text = ingress_nginx.render(table(web=[server("10.96.0.1", 80)]))
    assert "upstream web-http {\n        server 10.96.0.1:80 max_fails=0;" in text


# -- haproxy ----------------------------------------------------------------------------

HAPROXY_TAIL = """\
frontend ingress
    bind :80
    http-request set-var(txn.host) req.hdr(host),field(1,:),lower
    acl host-0 var(txn.host) -m str a.example
    acl path-0 path /api/v2
    acl path-1 path /api
    acl path-1 path_beg /api/
    acl path-3 path /status
    acl path-3 path_beg /status/
    use_backend web-http if host-0 path-0
    use_backend api-80 if host-0 path-1
    use_backend web-http if host-0
    use_backend _default-404 if host-0
    use_backend api-80 if path-3
    default_backend _default-404

backend _default-404
    http-request return status 404 content-type text/plain string "default backend - 404"

backend web-http
    balance roundrobin
    server 10.244.2.2-8080 10.244.2.2:8080
    server 10.244.2.3-8080 10.244.2.3:8080

backend api-80
    balance roundrobin
"""


def test_haproxy_acls_in_match_order_known_host_falls_to_default():
    text = ingress_haproxy.render(table(web=[server("10.244.2.3"), server("10.244.2.2")]))
    assert text.endswith("\n\n" + HAPROXY_TAIL)
    assert "master-worker" in text
    assert "expose-fd listeners" in text  # seamless reloads
    assert "retry-on conn-failure empty-response" in text


def test_haproxy_default_backend_replaces_the_404():
    rules = ingress(
        {"path": "/", "service": "api", "port": 80}, default_backend={"service": "web", "port": 80}
    )
    text = ingress_haproxy.render(table(rules))
    assert "    use_backend api-80\n    default_backend web-http\n" in text


# -- keepalived -------------------------------------------------------------------------

KEEPALIVED = """\
# Generated by labkit from the topology's vrrp section; do not edit.
global_defs {
    router_id edge-2
    vrrp_version 3
    script_user root
    enable_script_security
    vrrp_garp_master_delay 1
    vrrp_garp_master_repeat 2
}

vrrp_script proxy_alive {
    script "/usr/bin/curl -s -o /dev/null -m 1 http://127.0.0.1:8000/"
    interval 1
    timeout 1
    fall 2
    rise 2
}

vrrp_instance ingress {
    state BACKUP
    interface eth1
    virtual_router_id 51
    priority 100
    advert_int 0.2
    nopreempt
    virtual_ipaddress {
        10.213.5.100/24 dev eth1
    }
    track_script {
        proxy_alive
    }
}
"""


def vrrp_node(**changes: object) -> keepalived.VrrpNode:
    fields: dict[str, object] = {
        "name": "edge-2",
        "interface": "eth1",
        "priority": 100,
        "vip": IPv4Interface("10.213.5.100/24"),
        "advert_interval": 0.2,
        "preempt": False,
        "router_id": 51,
    }
    fields.update(changes)
    return keepalived.VrrpNode(**fields)  # type: ignore[arg-type]


def test_keepalived_backup_start_fractional_advert_nopreempt_and_proxy_check():
    check = keepalived.HealthCheck(keepalived.proxy_check_command(8000))
    assert keepalived.render(vrrp_node(), check) == KEEPALIVED


def test_keepalived_preempt_whole_seconds_and_no_check_without_ingress():
    text = keepalived.render(vrrp_node(preempt=True, advert_interval=1.0))
    assert "nopreempt" not in text
    assert "    advert_int 1\n" in text
    assert "vrrp_script" not in text and "track_script" not in text


# -- topology checks ----------------------------------------------------------------------

TOPOLOGY = """\
name: t
networks:
  underlay: {subnet: 10.213.9.0/24}
nodes:
  edge-1: {roles: [edge]}
  edge-2: {roles: [edge]}
  node-1: {}
  client: {roles: [external]}
pods:
  web-1: {node: node-1, labels: {app: web}, run: [echo-server]}
services:
  web: {selector: {app: web}, ports: [{name: http, port: 80, target_port: 8080}]}
ingress:
  nodes: [edge-1, edge-2]
  rules:
    - {host: web.example, path: /, service: web, port: http}
    - {host: web.example, path: /api, service: web, port: 80}
vrrp:
  vip: 10.213.9.100
  network: underlay
  priorities: {edge-1: 150, edge-2: 100}
"""


def test_the_example_topology_is_valid():
    topology = parse_topology(TOPOLOGY)
    assert topology.ingress is not None and topology.vrrp is not None


@pytest.mark.parametrize(
    ("old", "new", "where", "says"),
    [
        (
            "service: web, port: http}",
            "service: shop, port: http}",
            "t.yaml:16:",
            "unknown service 'shop'",
        ),
        (
            "service: web, port: http}",
            "service: web, port: https}",
            "t.yaml:16:",
            "has no port 'https'",
        ),
        ("service: web, port: 80}", "service: web, port: 81}", "t.yaml:17:", "has no port 81"),
        ("path: /api,", "path: api,", "t.yaml:17:", "must start with '/'"),
        ("path: /api,", "path: /,", "t.yaml:17:", "is routed by ingress.rules.0 already"),
        ("path: /api,", "path: '/a b',", "t.yaml:17:", "has a space"),
        (
            "host: web.example, path: /api",
            "host: 'Web.example:80', path: /api",
            "t.yaml:17:",
            "is not a DNS name",
        ),
        (
            "nodes: [edge-1, edge-2]",
            "nodes: [edge-1, edge-3]",
            "t.yaml:14:",
            "unknown node 'edge-3'",
        ),
        (
            "nodes: [edge-1, edge-2]",
            "nodes: [edge-1, client]",
            "t.yaml:14:",
            "an edge node must be a cluster node",
        ),
        (
            "edge-1: 150, edge-2: 100",
            "edge-1: 150, edge-9: 100",
            "t.yaml:21:",
            "unknown node 'edge-9'",
        ),
        (
            "edge-1: 150, edge-2: 100",
            "edge-1: 100, edge-2: 100",
            "t.yaml:21:",
            "ties with node 'edge-1'",
        ),
        (
            "edge-1: 150, edge-2: 100",
            "edge-1: 255, edge-2: 100",
            "t.yaml:21:",
            "out of range 1-254",
        ),
        (
            "vip: 10.213.9.100",
            "vip: 10.213.8.100",
            "t.yaml:19:",
            "outside network 'underlay' (10.213.9.0/24)",
        ),
        ("vip: 10.213.9.100", "vip: 10.213.9.2", "t.yaml:19:", "the address of node 'edge-1'"),
        ("vip: 10.213.9.100", "vip: 10.213.9.1", "t.yaml:19:", "gateway address"),
        ("network: underlay", "network: rack", "t.yaml:20:", "unknown network 'rack'"),
    ],
)
def test_bad_ingress_and_vrrp_inputs_name_their_place(old: str, new: str, where: str, says: str):
    assert old in TOPOLOGY
    found = problems(TOPOLOGY.replace(old, new, 1))
    assert any(p.startswith(where) and says in p for p in found), found


def test_edge_node_off_the_vip_network():
    text = TOPOLOGY.replace(
        "networks:\n  underlay: {subnet: 10.213.9.0/24}",
        "networks:\n  underlay: {subnet: 10.213.9.0/24}\n  rack: {}",
    )
    text = text.replace("edge-2: {roles: [edge]}", "edge-2: {roles: [edge], networks: [rack]}")
    for node in ("edge-1", "node-1", "client"):
        text = text.replace(f"  {node}: {{", f"  {node}: {{networks: [underlay], ")
    found = problems(text)
    assert any("ingress.nodes.1" in p and "not on network 'underlay'" in p for p in found), found
    assert any("vrrp.priorities.edge-2" in p and "cannot hold the VIP" in p for p in found), found


def test_vrrp_node_without_the_proxy_and_a_bad_advert_interval():
    text = TOPOLOGY.replace("edge-1: 150, edge-2: 100", "edge-1: 150, node-1: 100")
    text = text.replace("  priorities:", "  advert_interval: 0.005\n  priorities:")
    found = problems(text)
    assert any("vrrp.priorities.node-1" in p and "runs no ingress controller" in p for p in found)
    assert any("vrrp.advert_interval" in p and "centiseconds" in p for p in found), found


# -- the load client's record ---------------------------------------------------------------


def test_outage_spans_from_the_last_success_to_the_first_after_failures():
    result = LoadResult(
        (
            Request(0.0, 0.1, 200, "web-1"),
            Request(0.2, 0.3, 200, "web-2"),
            Request(0.4, 0.9, 0, "TimeoutError"),
            Request(1.0, 1.0, 0, "ConnectionRefusedError"),
            Request(1.1, 1.2, 200, "web-1"),
            Request(1.3, 1.4, 404, ""),
        )
    )
    assert (result.sent, result.ok, result.failed) == (6, 3, 3)
    assert result.outage_s == pytest.approx(1.2 - 0.3)
    assert result.pods() == {"web-1": 2, "web-2": 1}
    assert result.errors() == {"TimeoutError": 1, "ConnectionRefusedError": 1, "404": 1}
    assert not result.recovered
    assert result.after(1.05).sent == 2


def test_no_failure_no_outage_and_parse():
    result = parse_result('[1.0, 1.1, 200, "a"]\n[1.2, 1.3, 200, "b"]\n[1.4, 1.\n')
    assert result.outage_s == 0 and result.recovered and result.failed == 0


def test_labkit_up_refuses_a_tie_with_exit_code_2_before_touching_docker(tmp_path):
    from typer.testing import CliRunner

    from labkit.cli import app

    bad = tmp_path / "tie.yaml"
    bad.write_text(TOPOLOGY.replace("edge-1: 150, edge-2: 100", "edge-1: 100, edge-2: 100"))
    result = CliRunner().invoke(app, ["up", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:21:" in result.output and "ties with node 'edge-1'" in result.output
