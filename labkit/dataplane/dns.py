"""Cluster DNS names and each pod's resolv.conf, as the kubelet writes it. Pure.

The DNS itself runs in pods behind the DNS Service (dataplane/kube_dns.py).
Each pod gets its own resolv.conf (nameserver: the DNS ClusterIP; its
namespace's search path; ndots:5) through `ip netns exec`'s
/etc/netns/<pod>/resolv.conf.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address

from labkit.dataplane.script import q, write_file
from labkit.topology.model import key_name, slug

DOMAIN = "cluster.local"


def service_name(service: str, namespace: str) -> str:
    """`web.shop.svc.cluster.local` (a key `shop/web` names the same Service)."""
    return f"{key_name(service)}.{namespace}.svc.{DOMAIN}"


def resolv_conf(vip: IPv4Address, namespace: str) -> str:
    search = f"{namespace}.svc.{DOMAIN} svc.{DOMAIN} {DOMAIN}"
    return f"nameserver {vip}\nsearch {search}\noptions ndots:5\n"


def resolv_path(pod: str) -> str:
    return f"/etc/netns/{slug(pod)}/resolv.conf"


def pod_resolv_lines(vip: IPv4Address, pods: Mapping[str, str]) -> list[str]:
    """Write each pod's resolv.conf (pod -> namespace); one mkdir for all their folders."""
    if not pods:
        return []
    folders = " ".join(q(f"/etc/netns/{slug(pod)}") for pod in sorted(pods))
    return [f"mkdir -p {folders}"] + [
        write_file(resolv_path(pod), resolv_conf(vip, namespace))
        for pod, namespace in sorted(pods.items())
    ]


def forget_pods_lines(pods: Iterable[str]) -> list[str]:
    return [f"rm -rf {q(f'/etc/netns/{slug(pod)}')}" for pod in sorted(pods)]
