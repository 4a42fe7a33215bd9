"""Ingress: routing by host and path, the default backend, both upstream modes,
endpoints followed, graceful reloads, refused renders. Every test runs for
both controllers (nginx: topologies/ingress.yaml, haproxy:
topologies/ingress-haproxy.yaml), from the external client through the VIP.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from labkit import HttpResult, IngressConfigError, Lab, expect
from labkit.dataplane.ingress_routes import DEFAULT_404_BODY
from labkit.load import ContinuousClient

pytestmark = pytest.mark.parametrize(
    "controller",
    [
        pytest.param("nginx", marks=pytest.mark.topology("ingress"), id="nginx"),
        pytest.param("haproxy", marks=pytest.mark.topology("ingress-haproxy"), id="haproxy"),
    ],
)

# (host, path) -> the service that must answer, None for the default backend's 404
ROUTES: dict[tuple[str, str], str | None] = {
    ("web.example", "/"): "web",
    ("web.example", "/anything/below"): "web",
    ("shop.example", "/api"): "api",
    ("shop.example", "/api/"): "api",
    ("shop.example", "/api/v1/items?x=1"): "api",
    ("shop.example", "/cart"): "web",  # Exact
    ("other.example", "/status"): "api",  # host-less rule
    ("other.example", "/status/deep"): "api",
    ("shop.example", "/apix"): None,  # Prefix matches whole path elements
    ("shop.example", "/cart/x"): None,  # Exact is exact
    ("shop.example", "/status"): None,  # a host with rules does not fall to host-less ones
    ("other.example", "/"): None,
    ("nope.example", "/api"): None,
}


def get(lab: Lab, host: str, path: str = "/") -> HttpResult:
    vrrp = lab.topology.vrrp
    assert vrrp is not None
    return lab.node("client").http(vrrp.vip, 80, path, host=host)


def served_by(result: HttpResult) -> str | None:
    """The service whose pod answered (pods are named <service>-<n>), None for a 404."""
    if result.status == 404:
        assert result.body.strip() == DEFAULT_404_BODY, result.body
        return None
    assert result.status == 200, f"{result.status} {result.error} {result.body[:200]}"
    return result.pod.rsplit("-", 1)[0]


def check_routes(lab: Lab) -> None:
    seen = {(host, path): served_by(get(lab, host, path)) for host, path in ROUTES}
    wrong = {k: v for k, v in seen.items() if v != ROUTES[k]}
    assert not wrong, "\n".join(
        f"{host}{path}: expected {ROUTES[(host, path)] or '404'}, got {got or '404'}"
        for (host, path), got in wrong.items()
    )


@pytest.fixture
def endpoints_mode(lab: Lab) -> Iterator[None]:
    """The test runs in upstream mode `endpoints`; the topology's mode comes back after."""
    spec = lab.topology.ingress
    assert spec is not None
    original = spec.upstream
    lab.ingress.set_upstream("endpoints")
    yield
    lab.ingress.set_upstream(original)


def test_the_controller_of_the_topology_serves_on_every_edge_node(lab: Lab, controller: str):
    spec = lab.topology.ingress
    assert spec is not None and spec.controller == controller
    for node in spec.nodes:
        assert lab.ingress.proxy_running(node)
        # Each edge node serves, not only the VIP's holder.
        assert served_by(lab.node("client").http(lab.node(node).ip, 80, "/", host="web.example"))


def test_host_and_path_routing_and_the_default_backend(lab: Lab, controller: str):
    check_routes(lab)


def test_the_client_is_outside_the_pod_network(lab: Lab, controller: str):
    client = lab.node("client")
    assert "external" in client.roles
    assert not client.http(lab.pod("web-1"), 8080, timeout=1).ok
    assert client.http(lab.topology.vrrp.vip, 80, host="web.example").ok  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ["endpoints", "service"])
def test_both_upstream_modes_route_alike(lab: Lab, controller: str, mode: str):
    spec = lab.topology.ingress
    assert spec is not None
    original = spec.upstream
    try:
        lab.ingress.set_upstream(mode)
        text = lab.node(spec.nodes[0]).exec(f"cat {lab.ingress.controller.config_path}").stdout
        vip = str(lab.service("web").vip)
        pod_ips = [str(pod.ip) for pod in lab.pods(app="web")]
        if mode == "service":
            assert f"{vip}:80" in text and not any(ip in text for ip in pod_ips)
        else:
            assert vip not in text and all(f"{ip}:8080" in text for ip in pod_ips)
        expect.eventually(lambda: check_routes(lab), within=10, what=f"routing in mode {mode}")
    finally:
        lab.ingress.set_upstream(original)


def test_scaling_a_service_is_followed(lab: Lab, controller: str, endpoints_mode: None):
    def answering(count: int = 12) -> set[str]:
        return {get(lab, "web.example").pod for _ in range(count)}

    def in_rotation(*pods: str) -> None:
        seen = answering()
        assert seen == set(pods), f"answering: {sorted(seen)}"

    lab.add_pod("web-3", {"node": "node-1", "labels": {"app": "web"}, "run": ["echo-server"]})
    try:
        expect.eventually(lambda: in_rotation("web-1", "web-2", "web-3"), within=10)
    finally:
        lab.delete_pod("web-3")
    expect.eventually(lambda: in_rotation("web-1", "web-2"), within=10)


def test_an_endpoint_change_under_load_loses_no_request(
    lab: Lab, controller: str, endpoints_mode: None
):
    vip = lab.topology.vrrp.vip  # type: ignore[union-attr]
    with ContinuousClient(lab.node("client"), vip, host="web.example", duration=60) as client:
        client.wait_successes(5)
        lab.add_pod("web-4", {"node": "node-2", "labels": {"app": "web"}, "run": ["echo-server"]})
        client.wait_successes(20)
        # As Kubernetes does: out of the endpoints first, then the pod goes away.
        lab.set_labels("web-4", {"app": "draining"})
        client.wait_successes(10)
        lab.delete_pod("web-4")
        client.wait_successes(10)
    result = client.result
    assert result is not None
    print(f"{controller}: {result.summary()}; answered by {dict(result.pods())}")
    assert "web-4" in result.pods(), "the new endpoint never got a request"
    assert result.failed == 0, result.summary()


def test_a_refused_render_leaves_the_old_configuration_serving(lab: Lab, controller: str):
    spec = lab.topology.ingress
    assert spec is not None
    node = spec.nodes[0]
    path = lab.ingress.controller.config_path
    before = lab.node(node).exec(f"cat {path}").stdout
    if controller == "nginx":
        broken = before.replace("listen 80", "listen 80 bogus-keyword", 1)
    else:
        broken = before.replace("bind :80", "bind :80 bogus-keyword", 1)
    with pytest.raises(IngressConfigError) as refused:
        lab.ingress.deploy(node, broken)
    assert "bogus-keyword" in str(refused.value)  # the checker's own message
    assert lab.node(node).exec(f"cat {path}").stdout == before
    assert lab.ingress.proxy_running(node)
    assert "bogus" in str(lab.ingress.refused()[node])
    # The proxy still serves with the old configuration; a good render clears the error.
    assert served_by(lab.node("client").http(lab.node(node).ip, 80, "/", host="web.example"))
    lab.ingress.deploy_all(force=True)
    assert not lab.ingress.refused()
    check_routes(lab)
