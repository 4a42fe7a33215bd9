"""Traffic that leaves the cluster: pod egress masquerading and the servers nodes run. Pure.

Masquerading follows ip-masq-agent's layout: POSTROUTING sends the node's pod
traffic to a non-LOCAL destination into `IP-MASQ`, which RETURNs for the
destinations reached with the pod's own address (the pod and service CIDRs,
the configured non-masquerade CIDRs, link-local unless asked) and
MASQUERADEs the rest. So an external node sees the node's address and its
reply comes back without a route to the pod network (what flannel's
ip-masq and the CNI bridge's ipMasq do). A service VIP is DNATed before
POSTROUTING, so Service traffic keeps the pod's address to the endpoint.
"""

from __future__ import annotations

from ipaddress import IPv4Network

from labkit.dataplane.script import q
from labkit.topology.model import Cluster

CHAIN = "IP-MASQ"
LINK_LOCAL = IPv4Network("169.254.0.0/16")
_EOF = "LABKIT_IP_MASQ_EOF"
NODE_RUN_DIR = "/run/labkit/node-run"
NODE_LOG_DIR = "/var/log/labkit/node-run"


def non_masquerade_cidrs(cluster: Cluster) -> list[IPv4Network]:
    """Destinations that see the pod's own address, in the order they are tested."""
    cidrs = [cluster.pod_cidr, cluster.service_cidr, *cluster.masquerade.non_masquerade_cidrs]
    if not cluster.masquerade.masq_link_local:
        cidrs.append(LINK_LOCAL)
    return list(dict.fromkeys(cidrs))


def _iptables(cluster: Cluster) -> str:
    legacy = cluster.proxy_mode == "iptables" and cluster.iptables_backend == "legacy"
    return "iptables-legacy" if legacy else "iptables"


def masquerade_rules(cluster: Cluster) -> list[str]:
    """The `IP-MASQ` chain, as iptables-restore input (the chain is rewritten whole)."""
    lines = ["*nat", f":{CHAIN} - [0:0]"]
    lines += [
        f'-A {CHAIN} -d {cidr} -m comment --comment "ip-masq-agent: local traffic is not '
        'subject to MASQUERADE" -j RETURN'
        for cidr in non_masquerade_cidrs(cluster)
    ]
    lines += [
        f'-A {CHAIN} -m comment --comment "ip-masq-agent: outbound traffic is subject to '
        'MASQUERADE (must be last in chain)" -j MASQUERADE',
        "COMMIT",
    ]
    return lines


def _jump(pod_subnet: IPv4Network) -> str:
    return (
        f"POSTROUTING -s {pod_subnet} -m addrtype ! --dst-type LOCAL -m comment --comment "
        f'"ip-masq-agent: ensure nat POSTROUTING directs all non-LOCAL destination traffic to '
        f'our custom IP-MASQ chain" -j {CHAIN}'
    )


def masquerade_script(cluster: Cluster, pod_subnet: IPv4Network) -> str:
    """Write the chain and, once, the POSTROUTING jump for this node's pods."""
    iptables, jump = _iptables(cluster), _jump(pod_subnet)
    return "\n".join(
        [
            f"{iptables}-restore --noflush <<'{_EOF}'",
            *masquerade_rules(cluster),
            _EOF,
            f"{iptables} -t nat -C {jump} 2>/dev/null || {iptables} -t nat -A {jump}",
        ]
    )


def unmasquerade_script(cluster: Cluster, pod_subnet: IPv4Network) -> str:
    """Take the jump away (masquerading switched off): pods leave with their own address."""
    iptables = _iptables(cluster)
    return f"while {iptables} -t nat -D {_jump(pod_subnet)} 2>/dev/null; do :; done"


def node_run_script(commands: list[str]) -> str:
    """Start a node's declared servers, detached, each once (a pid file per server)."""
    lines = [f"mkdir -p {NODE_RUN_DIR} {NODE_LOG_DIR}"]
    for index, command in enumerate(commands):
        pidfile = f"{NODE_RUN_DIR}/{index}.pid"
        inner = f'echo $$ > {pidfile}; exec sh -c "$0"'
        lines.append(
            f'if ! {{ [ -f {pidfile} ] && kill -0 "$(cat {pidfile})" 2>/dev/null; }}; then '
            f"setsid -f sh -c {q(inner)} {q(command)} >> {NODE_LOG_DIR}/{index}.log 2>&1 < /dev/null; fi"
        )
    return "\n".join(lines)
