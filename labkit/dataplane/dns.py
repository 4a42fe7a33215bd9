"""The cluster DNS: dnsmasq on every cluster node, answering at the DNS VIP.

Like NodeLocal DNSCache, each node holds the DNS VIP (10.96.0.10 by
convention) as a local address (on `lo`: this kernel has no dummy links), so a pod's query, routed to its node, is
answered there. dnsmasq serves `<service>.<namespace>.svc.cluster.local` ->
VIP from a hosts file, answers NXDOMAIN for other names under cluster.local,
and re-reads the file on SIGHUP when services change. Each pod gets its own
resolv.conf with its namespace's search path, through `ip netns exec`'s
/etc/netns/<pod>/resolv.conf. Pure: text and scripts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address

from labkit.dataplane.script import q, write_file
from labkit.topology.model import key_name, slug

DOMAIN = "cluster.local"
DEVICE = "lo"
CONFIG_DIR = "/etc/labkit/dns"
HOSTS_PATH = f"{CONFIG_DIR}/hosts"
CONF_PATH = f"{CONFIG_DIR}/dnsmasq.conf"
PID_PATH = "/run/labkit-dnsmasq.pid"
LOG_PATH = "/var/log/labkit/dnsmasq.log"


def service_name(service: str, namespace: str) -> str:
    """`web.shop.svc.cluster.local` (a key `shop/web` names the same Service)."""
    return f"{key_name(service)}.{namespace}.svc.{DOMAIN}"


def hosts_file(services: Mapping[str, tuple[str, IPv4Address]]) -> str:
    """`VIP fqdn` per service (service -> (namespace, VIP)), sorted by name."""
    lines = [
        f"{vip} {service_name(name, namespace)}"
        for name, (namespace, vip) in sorted(services.items())
    ]
    return "\n".join(lines) + "\n"


def dnsmasq_conf(vip: IPv4Address) -> str:
    return (
        "\n".join(
            [
                "# labkit cluster DNS (CoreDNS' role): service names from the hosts file",
                "no-resolv",
                "no-hosts",
                f"addn-hosts={HOSTS_PATH}",
                f"listen-address={vip}",
                "bind-interfaces",
                f"local=/{DOMAIN}/",  # never forwarded: unknown names are NXDOMAIN
                "domain-needed",
                "local-ttl=5",
                f"pid-file={PID_PATH}",
                "user=root",
                f"log-facility={LOG_PATH}",
            ]
        )
        + "\n"
    )


def resolv_conf(vip: IPv4Address, namespace: str) -> str:
    search = f"{namespace}.svc.{DOMAIN} svc.{DOMAIN} {DOMAIN}"
    return f"search {search}\nnameserver {vip}\noptions ndots:5\n"


def resolv_path(pod: str) -> str:
    return f"/etc/netns/{slug(pod)}/resolv.conf"


def pod_resolv_lines(vip: IPv4Address, pods: Mapping[str, str]) -> list[str]:
    """Write each pod's resolv.conf (pod -> namespace)."""
    return [
        write_file(resolv_path(pod), resolv_conf(vip, namespace))
        for pod, namespace in sorted(pods.items())
    ]


def forget_pods_lines(pods: Iterable[str]) -> list[str]:
    return [f"rm -rf {q(f'/etc/netns/{slug(pod)}')}" for pod in sorted(pods)]


def node_dns_lines(vip: IPv4Address, hosts: str) -> list[str]:
    """Hold the VIP, write the config and hosts, start dnsmasq or make it re-read the hosts."""
    return [
        f"ip addr replace {vip}/32 dev {DEVICE}",
        write_file(CONF_PATH, dnsmasq_conf(vip)),
        write_file(HOSTS_PATH, hosts),
        f"if [ -f {PID_PATH} ] && kill -0 $(cat {PID_PATH}) 2>/dev/null; "
        f"then kill -HUP $(cat {PID_PATH}); else dnsmasq --conf-file={CONF_PATH}; fi",
    ]


def hosts_update_lines(hosts: str) -> list[str]:
    return [
        write_file(HOSTS_PATH, hosts),
        f"[ -f {PID_PATH} ] && kill -HUP $(cat {PID_PATH}) || true",
    ]
