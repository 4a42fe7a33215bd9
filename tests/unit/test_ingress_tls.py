"""TLS at the ingress: certificates from manifests' Secrets or self-signed, which host
gets which, the proxies' configuration, and the files script (run here, in a temp dir)."""

from __future__ import annotations

import base64
import io
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from topology_problems import problems

from labkit.cli.kube import ROWS
from labkit.dataplane import ingress_haproxy, ingress_nginx, ingress_tls
from labkit.dataplane.ingress_routes import routing_table
from labkit.errors import TopologyError
from labkit.topology import parse_topology
from labkit.topology.kube import load_manifests
from labkit.topology.model import Ingress, Service

CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"
SERVICES = {"web": Service.model_validate({"ports": [{"name": "http", "port": 80}]})}


def tls_table(*tls: dict[str, object]):
    rules = [
        {"host": host, "service": "web", "port": "http"}
        for host in ("shop.example", "a.blog.example", "other.example")
    ]
    ingress = Ingress.model_validate({"nodes": ["e"], "rules": rules, "tls": list(tls)})
    return routing_table(ingress, SERVICES, {})


GIVEN = {"hosts": ["shop.example", "*.blog.example"], "certificate": CERT, "key": KEY}


def test_nginx_serves_every_server_on_443_with_its_hosts_certificate_or_the_default():
    text = ingress_nginx.render(tls_table(GIVEN, {"hosts": ["other.example"]}))
    servers = {
        block.split("server_name ")[1].split(";")[0]: block for block in text.split("server {")[1:]
    }
    assert "listen 443 ssl default_server;" in servers["_"]
    assert f"ssl_certificate {ingress_tls.DEFAULT_PEM};" in servers["_"]
    assert "ssl_certificate /etc/labkit/ingress/tls/0.pem;" in servers["shop.example"]
    assert "ssl_certificate /etc/labkit/ingress/tls/0.pem;" in servers["a.blog.example"]
    assert f"ssl_certificate {ingress_tls.DEFAULT_PEM};" in servers["other.example"]
    assert "listen 80;" in servers["shop.example"]  # plain HTTP stays served


def test_haproxy_binds_443_with_the_default_first_then_the_given_by_host():
    text = ingress_haproxy.render(tls_table(GIVEN))
    assert f"bind :443 ssl crt {ingress_tls.DEFAULT_PEM} crt-list {ingress_tls.CRT_LIST}" in text
    assert ingress_tls.crt_list(tls_table(GIVEN).certificates) == (
        "/etc/labkit/ingress/tls/0.pem shop.example *.blog.example\n"
    )
    only_default = ingress_haproxy.render(tls_table({"hosts": ["shop.example"]}))
    assert f"bind :443 ssl crt {ingress_tls.DEFAULT_PEM}\n" in only_default


def test_no_tls_no_https_and_a_changed_certificate_changes_the_configuration():
    plain = tls_table()
    assert plain.tls_port is None
    assert "ssl" not in ingress_nginx.render(plain) and "ssl" not in ingress_haproxy.render(plain)
    renewed = {**GIVEN, "certificate": CERT.replace("MIIB", "MIIC")}
    for proxy in (ingress_nginx, ingress_haproxy):
        assert proxy.render(tls_table(GIVEN)) != proxy.render(tls_table(renewed))


def test_a_wildcard_matches_one_label():
    assert ingress_tls.host_matches("*.blog.example", "a.blog.example")
    assert not ingress_tls.host_matches("*.blog.example", "a.b.blog.example")
    assert not ingress_tls.host_matches("*.blog.example", "blog.example")


def test_the_files_script_makes_the_default_certificate_once_and_writes_the_given(
    monkeypatch, tmp_path: Path
):
    monkeypatch.setattr(ingress_tls, "TLS_DIR", str(tmp_path / "tls"))
    monkeypatch.setattr(ingress_tls, "DEFAULT_PEM", str(tmp_path / "tls" / "default.pem"))
    monkeypatch.setattr(ingress_tls, "CRT_LIST", str(tmp_path / "tls" / "crt-list"))
    given = ingress_tls.certificates(
        Ingress.model_validate({"nodes": ["e"], "tls": [{"hosts": ["x"]}, GIVEN]})
    )
    script = ingress_tls.files_script(given)
    subprocess.run(["bash", "-ec", script], check=True)
    default = tmp_path / "tls" / "default.pem"
    subject = subprocess.run(
        ["openssl", "x509", "-noout", "-subject", "-in", str(default)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "Kubernetes Ingress Controller Fake Certificate" in subject
    assert "PRIVATE KEY" in default.read_text()
    first = default.read_bytes()
    subprocess.run(["bash", "-ec", script], check=True)
    assert default.read_bytes() == first  # made once: a reload keeps the same certificate
    assert (tmp_path / "tls" / "1.pem").read_text() == f"{CERT}\n{KEY}\n"
    assert (
        tmp_path / "tls" / "crt-list"
    ).read_text() == f"{tmp_path}/tls/1.pem shop.example *.blog.example\n"


INFRA = "name: t\nnodes:\n  node-1: {roles: [edge]}\n"
INGRESS = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {selector: {app: web}, ports: [{name: http, port: 80}]}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: shop}
spec:
  ingressClassName: nginx
  tls: [{hosts: [shop.example], secretName: shop-tls}]
  rules:
  - host: shop.example
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}]
"""


def secret(crt: str = CERT, key: str = KEY) -> str:
    encode = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
    return f"""\
---
apiVersion: v1
kind: Secret
metadata: {{name: shop-tls, namespace: shop}}
type: kubernetes.io/tls
data: {{tls.crt: {encode(crt)}, tls.key: {encode(key)}}}
"""


def load(text: str):
    return load_manifests(["-"], parse_topology(INFRA), stdin=io.StringIO(text))


def test_an_ingress_tls_secret_becomes_its_hosts_certificate_and_is_not_ignored():
    report = load(INGRESS + secret())
    ingress = report.topology.ingress
    assert ingress is not None
    (entry,) = ingress.tls
    assert entry.hosts == ["shop.example"] and entry.secret == "shop/shop-tls"
    assert (entry.certificate, entry.key) == (CERT, KEY)
    assert report.ignored == [] and not any(n.startswith("note:") for n in report.notes())


def test_a_missing_secret_is_served_with_the_self_signed_certificate_and_noted():
    report = load(INGRESS)
    ingress = report.topology.ingress
    assert ingress is not None and ingress.tls[0].certificate is None
    assert report.notes()[0] == (
        "note: <stdin>:11: Ingress/shop/web: spec.tls.0.secretName: no kubernetes.io/tls "
        "Secret 'shop/shop-tls' among the manifests: served with the lab's self-signed certificate"
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            INGRESS + secret().replace("tls.key: ", "other: "),
            "Secret/shop/shop-tls: data: a kubernetes.io/tls Secret needs tls.key",
        ),
        (
            INGRESS + secret(key="not a key"),
            "Ingress/shop/web: spec.tls.0: key is not a PEM private key",
        ),
        (
            INGRESS.replace("hosts: [shop.example]", "hosts: [Shop_Example]"),
            "Ingress/shop/web: spec.tls.0.hosts.0: host 'Shop_Example' is not a DNS name",
        ),
    ],
)
def test_bad_tls_input_names_the_document_and_field(text: str, says: str):
    with pytest.raises(TopologyError) as caught:
        load(text)
    messages = [str(problem) for problem in caught.value.problems]
    assert any(says in message for message in messages), messages


def test_the_https_port_must_be_free():
    text = (
        "name: t\nnodes:\n  e: {roles: [edge]}\n"
        "ingress: {nodes: [e], port: 8443, tls_port: 8443, tls: [{hosts: [a.example]}]}\n"
    )
    (message,) = problems(text)
    assert "ingress.tls_port: port 8443 is taken by the ingress's HTTP" in message


def test_get_ingresses_shows_the_https_port_once_there_is_tls():
    def rows(tls: list[dict[str, object]]) -> list[str]:
        topology = parse_topology(
            INFRA
            + "services: {web: {ports: [{name: http, port: 80}]}}\n"
            + "ingress: {nodes: [node-1], rules: [{host: a.example, service: web, port: http}], "
            + f"tls: {tls}}}\n"
        )
        lab = SimpleNamespace(topology=topology, node=lambda _: SimpleNamespace(ip="10.0.0.2"))
        return [row["ports"] for row in ROWS["ingresses"](lab)]

    assert rows([]) == ["80"]
    assert rows([{"hosts": ["a.example"]}]) == ["80, 443"]
