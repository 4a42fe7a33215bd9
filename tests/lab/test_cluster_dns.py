"""The cluster DNS as a cluster runs it: kube-dns pods behind the DNS Service.

Modelled on Kubernetes' DNS e2e checks (A for Services, headless endpoints,
StatefulSet per-pod names, SRV, ExternalName CNAME, the kubelet's
resolv.conf) and the NetworkPolicy e2e suite's DNS egress cases.
"""

from __future__ import annotations

import pytest
from waits import holds

from labkit import PodHandle

pytestmark = pytest.mark.topology("cluster-edge")

DNS_VIP = "10.96.0.10"
KUBE_DNS = {"k8s-app": "kube-dns"}


def dig(pod: PodHandle, *query: str) -> list[str]:
    return pod.exec("dig +short +time=1 +tries=2 " + " ".join(query), check=False).stdout.split()


def resolves(pod: PodHandle, name: str) -> bool:
    return pod.exec(f"getent hosts {name}", check=False).exit_code == 0


def test_dns_runs_in_two_kube_dns_pods_behind_the_dns_service(lab):
    pods = lab.pods(**KUBE_DNS)
    assert [p.namespace for p in pods] == ["kube-system", "kube-system"]
    assert len({p.node.name for p in pods}) == 2  # one replica per node
    service = lab.service("kube-dns")
    assert str(service.vip) == DNS_VIP and service.namespace == "kube-system"
    assert {e.pod for e in service.endpoints()} == {p.name for p in pods}
    for node in lab.nodes():  # not on any node's loopback: only the Service answers
        assert DNS_VIP not in node.exec("ip -o -4 addr show").stdout, node
    assert not {p.name for p in pods} & {p.name for p in lab.pods()}  # workloads only


def test_each_pod_has_the_resolv_conf_the_kubelet_writes(lab):
    lines = lab.pod("np-client").exec("cat /etc/resolv.conf").stdout.splitlines()
    assert lines == [
        f"nameserver {DNS_VIP}",
        "search np.svc.cluster.local svc.cluster.local cluster.local",
        "options ndots:5",
    ]


def test_records_of_services_headless_endpoints_statefulset_names_srv_and_cname(lab):
    client = lab.pod("client")
    web_ips = sorted(str(lab.pod(p).ip) for p in ("web-0", "web-1"))
    assert client.exec("getent hosts web-svc").stdout.split()[0] == str(lab.service("web-svc").vip)
    assert sorted(dig(client, "web.default.svc.cluster.local")) == web_ips  # headless: the pods
    assert dig(client, "web-0.web.default.svc.cluster.local") == [str(lab.pod("web-0").ip)]
    srv = dig(client, "SRV", "_http._tcp.web.default.svc.cluster.local")
    assert "web-0.web.default.svc.cluster.local." in srv and "8080" in srv
    srv = dig(client, "SRV", "_http._tcp.web-svc.default.svc.cluster.local")
    assert srv[-2:] == ["80", "web-svc.default.svc.cluster.local."]
    assert dig(client, "CNAME", "ext.default.svc.cluster.local") == ["example.org."]
    assert dig(client, "+tcp", "web-svc.default.svc.cluster.local") == [
        str(lab.service("web-svc").vip)
    ]
    assert client.http("web-svc", 80).ok
    # Another namespace's search path: the short name is not found, the qualified one is.
    other = lab.pod("np-client")
    assert not resolves(other, "web-svc") and resolves(other, "web-svc.default")


def test_dns_traffic_is_service_traffic(lab):
    client = lab.pod("client")
    assert dig(client, "web-svc.default.svc.cluster.local")
    entries = client.node.exec(
        f"conntrack -L -p udp --orig-dst {DNS_VIP} --dport 53 2>/dev/null"
    ).stdout
    # The query went to the ClusterIP; the reply came from a kube-dns pod (DNAT).
    assert any(f"src={p.ip} " in entries for p in lab.pods(**KUBE_DNS)), entries


def test_headless_records_follow_the_ready_pods(lab):
    client, web1 = lab.pod("client"), lab.pod("web-1")
    web1.kill()
    try:
        holds(
            lambda: dig(client, "web.default.svc.cluster.local") == [str(lab.pod("web-0").ip)],
            within=10,
            what="the headless name to drop web-1",
        )
        assert dig(client, "web-1.web.default.svc.cluster.local") == []
    finally:
        web1.restart()
    holds(
        lambda: len(dig(client, "web.default.svc.cluster.local")) == 2,
        within=10,
        what="web-1 back in the headless name",
    )


def test_records_follow_a_new_service(lab):
    client = lab.pod("client")
    extra = lab.services.add(
        "extra", {"selector": {"app": "web"}, "ports": [{"port": 81, "target_port": 8080}]}
    )
    try:
        assert client.exec("getent hosts extra").stdout.split()[0] == str(extra.vip)
    finally:
        lab.services.delete("extra")
    assert not resolves(client, "extra")


def test_dns_survives_the_loss_of_one_dns_pod(lab):
    victim, survivor = lab.pods(**KUBE_DNS)
    client = lab.pod("client")
    victim.kill()
    try:
        assert [e.pod for e in lab.service("kube-dns").endpoints()] == [survivor.name]
        assert all(resolves(client, "web-svc") for _ in range(10))
    finally:
        victim.restart()
    holds(
        lambda: len(lab.service("kube-dns").endpoints(fresh=True)) == 2,
        within=10,
        what="both DNS pods",
    )


DNS_ONLY = {
    "deny-egress-but-dns": {
        "namespace": "np",
        "pod_selector": {},
        "policy_types": ["Egress"],
        "egress": [
            {
                "to": [
                    {
                        "namespace_selector": {
                            "match_labels": {"kubernetes.io/metadata.name": "kube-system"}
                        },
                        "pod_selector": {"match_labels": KUBE_DNS},
                    }
                ],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            }
        ],
    }
}
DENY_ALL = {"deny-egress": {"namespace": "np", "pod_selector": {}, "policy_types": ["Egress"]}}


def test_default_deny_egress_that_allows_dns_to_kube_dns_only(lab):
    pod, web = lab.pod("np-client"), lab.service("web-svc")
    assert pod.http(web.vip, 80).ok
    try:
        lab.set_policies(DNS_ONLY)
        assert resolves(pod, "web-svc.default")  # names resolve...
        assert not pod.http(web.vip, 80, timeout=2).ok  # ...nothing else leaves
        assert not pod.tcp(lab.pod("web-0"), 8080, timeout=1).ok
        assert not pod.http(lab.node("outside"), 8080, timeout=2).ok
        lab.set_policies(DENY_ALL)
        assert not resolves(pod, "web-svc.default")  # without the DNS rule, not even names
    finally:
        lab.set_policies({})
    assert pod.http(web.vip, 80).ok
