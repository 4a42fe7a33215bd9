"""Kubernetes manifests on a real lab, real packets.

(a) The NetworkPolicy e2e cases of test_policy.py again, from the standard
YAML files in tests/data/policies/, applied with `lab.apply` and deleted
after, with the same 9 x 9 truth tables. (b) A Deployment scaled 2 -> 4 -> 1
through `apply`: endpoints, DNS and ingress follow, no request fails once it
settled. (c) An app written as ordinary manifests gives the reachability its
policies say, from inside and outside. One lab per topology for all tests.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from shlex import quote as q

import pytest
import yaml
from test_policy import NAMESPACES, check_truth_table, label, ns

from labkit import Lab, expect
from labkit.dataplane.script import write_file
from labkit.topology.model import key_name

DATA = Path(__file__).parent.parent / "data"
POLICIES = DATA / "policies"
APP = pytest.mark.topology(
    "../data/kube/lab/topology.yaml",
    manifests=["../data/kube/lab/shop.yaml", "../data/kube/lab/scale.yaml"],
)


# -- (a) the policy e2e cases from YAML ------------------------------------------------


def _on_node2(lab: Lab) -> set[str]:
    return {p.name for p in lab.pods() if p.node.name == "node-2"}


# file -> the truth table test_policy.py checks for the same policies
CASES = {
    "default-deny-ingress": lambda lab: lambda s, t, port, proto: ns(t) != "x",
    "default-deny-egress": lambda lab: lambda s, t, port, proto: ns(s) != "x",
    "allow-from-one-namespace": lambda lab: lambda s, t, port, proto: t != "x-a" or ns(s) == "y",
    "allow-from-pods-with-a-label": lambda lab: (
        lambda s, t, port, proto: t != "x-a" or s in ("x-b", "z-c")
    ),
    "ip-block-with-an-exception": lambda lab: (
        lambda s, t, port, proto: t != "x-a" or (s in _on_node2(lab) and s != "y-a")
    ),
    "egress-ip-block-with-an-exception": lambda lab: (
        lambda s, t, port, proto: not (s == "x-b" and t == "z-b")
    ),
    "allow-one-port-only": lambda lab: (
        lambda s, t, port, proto: t != "x-a" or (port, proto) == (81, "TCP")
    ),
    "allow-a-named-port-from-a-namespace": lambda lab: (
        lambda s, t, port, proto: ns(t) != "y" or (ns(s) == "z" and (port, proto) == (80, "UDP"))
    ),
    "isolated-namespace": lambda lab: lambda s, t, port, proto: (ns(s) == "z") == (ns(t) == "z"),
    "isolation-plus-a-policy-that-opens-it": lambda lab: (
        lambda s, t, port, proto: (
            (ns(t) == "z" and (ns(s) == "z" or label(s) == "a")) or (ns(s) != "z" and ns(t) != "z")
        )
    ),
    "unknown-namespace": lambda lab: lambda s, t, port, proto: t != "x-c",
}


_converged: set[str] = set()


def converged(lab: Lab) -> None:
    """Once per lab: every path open before the first case (a fresh lab still learns its
    neighbours and tunnel endpoints; a busy host makes that slow)."""
    if lab.name not in _converged:
        expect.eventually(
            lambda: check_truth_table(lab, lambda s, t, port, proto: True),
            within=60,
            every=1,
            what="the policy lab's full mesh",
        )
        _converged.add(lab.name)


@pytest.mark.topology("policy")
@pytest.mark.parametrize("case", sorted(CASES))
def test_policy_case_from_yaml(lab, case):
    lab.set_policies({}, namespaces=NAMESPACES)
    converged(lab)
    path = POLICIES / f"{case}.yaml"
    result = lab.apply(path)
    try:
        assert all(line.endswith("created") for line in result.lines), result.lines
        # The pinned addresses in the YAML are the ones the lab has.
        assert str(lab.addresses.pod_subnets["node-2"]) == "10.244.1.0/24"
        assert str(lab.pod("y-a").ip) == "10.244.1.3"
        check_truth_table(lab, CASES[case](lab))
    finally:
        lab.delete(path)
    assert not lab.topology.policies


@pytest.mark.topology("policy")
def test_policy_peers_follow_a_relabelled_pod_from_yaml(lab):
    path = POLICIES / "peers-follow-a-relabelled-pod.yaml"
    lab.apply(path)
    lab.set_labels("y-c", {"pod": "b"})
    try:
        check_truth_table(lab, lambda s, t, port, proto: t != "x-a" or s in ("y-b", "y-c"))
    finally:
        lab.set_labels("y-c", {"pod": "c"})
        lab.delete(path)


@pytest.mark.topology("policy")
def test_an_invalid_policy_file_changes_nothing(lab):
    from labkit.errors import TopologyError

    with pytest.raises(TopologyError) as caught:
        lab.apply(POLICIES / "bad-policies.yaml")
    assert caught.value.exit_code == 2
    assert ":9: NetworkPolicy/y/bad-cidr: spec.ingress.0.from.0.ipBlock.cidr" in str(caught.value)
    assert not lab.topology.policies


# -- (b) a Deployment scaled through apply ----------------------------------------------


def _web(replicas: int) -> dict:
    documents = list(yaml.safe_load_all((DATA / "kube" / "lab" / "scale.yaml").read_text()))
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    deployment["spec"]["replicas"] = replicas
    return deployment


def _web_pods(lab: Lab) -> set[str]:
    return {key for key in lab.topology.pods if key.startswith("scale/web-")}


def _settled_and_served(lab: Lab, replicas: int) -> None:
    pods = _web_pods(lab)
    assert len(pods) == replicas
    service = lab.service("scale/web")
    assert {e.pod for e in service.endpoints()} == pods
    assert service.dns_name == "web.scale.svc.cluster.local"
    probe = lab.pod("probe")

    def resolves() -> None:
        found = probe.exec(f"getent hosts {service.dns_name}", check=False).stdout.split()
        assert found[:1] == [str(service.vip)], found

    expect.eventually(resolves, within=10, what=f"{service.dns_name} -> {service.vip}")
    names = {key_name(p) for p in pods}
    # Through the Service from inside, and through the ingress from outside:
    # every request answered, and by every replica.
    count = 6 * replicas
    inside = many_gets(probe, f"http://{service.vip}/", count)
    assert all(status == 200 for status, _ in inside), inside
    assert {served for _, served in inside} == names
    edge = lab.node("node-1")
    outside = many_gets(lab.node("client"), f"http://{edge.ip}/", count, host="scale.example")
    assert all(status == 200 for status, _ in outside), outside
    assert {served for _, served in outside} == names


_GETS = r"""
import json, sys, urllib.request
url, count, host = sys.argv[1], int(sys.argv[2]), sys.argv[3]
found = []
for _ in range(count):
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=2) as reply:
            found.append([reply.status, json.loads(reply.read()).get("pod", "")])
    except Exception as exc:
        found.append([0, type(exc).__name__ + ": " + str(exc)])
print(json.dumps(found))
"""


def many_gets(source, url: str, count: int, host: str = "") -> list[tuple[int, str]]:
    """`count` HTTP GETs in one exec: (status, the pod that answered) each."""
    command = f"python3 -c {q(_GETS)} {q(url)} {count} {q(host)}"
    return [(status, pod) for status, pod in json.loads(source.exec(command, timeout=60).stdout)]


@APP
def test_a_deployment_scaled_2_4_1_endpoints_dns_and_ingress_follow(lab):
    _settled_and_served(lab, 2)
    first = _web_pods(lab)
    result = lab.apply([_web(4)])
    assert result.lines == ["Deployment/scale/web configured"]
    assert first < _web_pods(lab)  # the first two stay where they are
    _settled_and_served(lab, 4)
    lab.apply([_web(1)])
    assert _web_pods(lab) < first
    _settled_and_served(lab, 1)
    lab.apply([_web(2)])
    assert _web_pods(lab) == first


# -- (c) an app as ordinary manifests ---------------------------------------------------------


@APP
def test_an_app_of_manifests_reachable_as_its_policies_say(lab):
    frontend = lab.service("shop/frontend")
    backend = lab.service("backend")  # a bare name, unambiguous
    assert backend.name == "shop/backend"
    assert len(frontend.endpoints()) == 2 and len(backend.endpoints()) == 2
    probe = lab.pod("probe")
    front_pod = next(p for p in lab.pods(app="frontend"))
    back_pod = next(p for p in lab.pods(app="backend"))
    # Inside: anyone reaches the frontend on its named port; only the frontend the backend.
    assert probe.http(frontend.vip, 80, timeout=2).status == 200
    assert probe.http("frontend.shop.svc.cluster.local", 80, timeout=2).status == 200
    assert not probe.tcp(backend.vip, 9090, timeout=1).ok
    assert not probe.tcp(back_pod.ip, 9090, timeout=1).ok
    assert front_pod.tcp(backend.vip, 9090, timeout=2).ok
    assert front_pod.tcp("backend", 9090, timeout=2).ok  # the namespace's search path
    assert back_pod.http(frontend.vip, 80, timeout=2).status == 200
    assert not probe.http(front_pod.ip, 9999, timeout=1).ok  # other ports stay shut
    # Outside: the ingress on the edge node, by host.
    got = lab.node("client").http(lab.node("node-1").ip, 80, host="shop.example", timeout=2)
    assert got.status == 200 and got.pod.startswith("frontend-")
    assert front_pod.ready() and back_pod.ready()  # their readiness probes pass


@APP
def test_a_changed_policy_reaches_every_node_and_delete_reverts_it(lab):
    probe = lab.pod("probe")
    backend = lab.service("shop/backend")
    opened = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "backend-from-frontend", "namespace": "shop"},
        "spec": {"podSelector": {"matchLabels": {"app": "backend"}}, "ingress": [{}]},
    }
    before = yaml.safe_load_all((DATA / "kube" / "lab" / "shop.yaml").read_text())
    original = next(d for d in before if d["metadata"]["name"] == "backend-from-frontend")
    result = lab.apply([opened])
    try:
        assert result.lines == ["NetworkPolicy/shop/backend-from-frontend configured"]
        assert not result.plan.pods_new and result.plan.policies_changed
        assert probe.tcp(backend.vip, 9090, timeout=2).ok
    finally:
        lab.apply([original])
    assert not probe.tcp(backend.vip, 9090, timeout=1).ok


def _self_signed(host: str, folder: Path) -> tuple[str, str]:
    """A certificate for `host` and its key, made on this machine."""
    key, crt = folder / "tls.key", folder / "tls.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host}",
         "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True,
    )  # fmt: skip
    return crt.read_text(), key.read_text()


@APP
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl on this machine")
def test_an_ingress_with_tls_serves_https_with_its_secret_and_the_default_certificate(
    lab, tmp_path
):
    crt, key = _self_signed("shop.example", tmp_path)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "shop-tls", "namespace": "shop"},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(crt.encode()).decode(),
            "tls.key": base64.b64encode(key.encode()).decode(),
        },
    }
    documents = yaml.safe_load_all((DATA / "kube" / "lab" / "shop.yaml").read_text())
    original = next(d for d in documents if d["kind"] == "Ingress")
    with_tls = json.loads(json.dumps(original))
    with_tls["spec"]["tls"] = [{"hosts": ["shop.example"], "secretName": "shop-tls"}]
    client, edge = lab.node("client"), lab.node("node-1").ip
    result = lab.apply([secret, with_tls])
    try:
        assert result.lines == ["Secret/shop/shop-tls created", "Ingress/shop/shop configured"]
        client.exec(write_file("/tmp/shop-ca.pem", crt))
        # Verified against the Secret's certificate: the host is served with it.
        got = client.exec(
            f"curl -sS --max-time 5 --cacert /tmp/shop-ca.pem "
            f"--resolve shop.example:443:{edge} https://shop.example/"
        )
        assert json.loads(got.stdout)["pod"].startswith("frontend-")
        # Another host: the default, self-signed certificate, as ingress-nginx serves it.
        shown = client.exec(
            f"openssl s_client -connect {edge}:443 -servername scale.example </dev/null "
            "2>/dev/null | openssl x509 -noout -subject"
        )
        assert "Kubernetes Ingress Controller Fake Certificate" in shown.stdout
        plain = client.http(edge, 80, host="shop.example", timeout=2)  # HTTP still served
        assert plain.status == 200
    finally:
        lab.apply([original])
        lab.delete([secret])


# -- the command line on the same lab ---------------------------------------------------


@APP
def test_cli_get_apply_delete(lab, tmp_path):
    from cli_runner import labkit

    pods = labkit("get", "pods", "-n", "shop", "-o", "json", "--lab", lab.name)
    assert pods.returncode == 0, pods.stderr
    items = json.loads(pods.stdout)["items"]
    assert {i["name"] for i in items} == {
        key_name(p.name) for p in lab.pods() if p.namespace == "shop"
    }
    assert [i["name"] for i in items if i["ready"] != "true"] == []
    assert {i["ip"] for i in items} == {str(p.ip) for p in lab.pods() if p.namespace == "shop"}
    endpoints = labkit("get", "endpoints", "-n", "shop", "--lab", lab.name)
    assert endpoints.returncode == 0 and ":8080" in endpoints.stdout and ":9090" in endpoints.stdout
    for kind in ("services", "networkpolicies", "ingresses"):
        shown = labkit("get", kind, "-o", "wide", "--lab", lab.name)
        assert shown.returncode == 0, shown.stderr
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: extra, namespace: shop}\n"
        "spec: {selector: {app: frontend}, ports: [{port: 8080}]}\n"
    )
    applied = labkit("apply", "-f", str(extra), "--lab", lab.name)
    assert applied.returncode == 0, applied.stderr
    assert "Service/shop/extra created" in applied.stdout
    assert lab.pod("probe").http("extra.shop.svc.cluster.local", 8080, timeout=2).status == 200
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: extra, namespace: shop}\nspec: {ports: 7}\n"
    )
    refused = labkit("apply", "-f", str(bad), "--lab", lab.name)
    assert refused.returncode == 2 and f"{bad}:4: Service/shop/extra: spec.ports" in refused.stderr
    deleted = labkit("delete", "-f", str(extra), "--lab", lab.name)
    assert deleted.returncode == 0 and "Service/shop/extra deleted" in deleted.stdout
