"""kube-proxy's iptables mode: the chains every node has whatever its services.

The jumps from the built-in chains (`HOOKS`, which the node script ensures), the
fixed chains' names and rules (KUBE-FORWARD, KUBE-POSTROUTING, KUBE-MARK-MASQ,
the KUBE-FIREWALL martian drop, KUBE-SERVICES' last jump to KUBE-NODEPORTS) and
what they depend on: the host's features and the route_localnet sysctl.
`labkit.dataplane.kubeproxy_iptables` renders the per-service chains around them.
"""

from __future__ import annotations

from dataclasses import dataclass

from labkit.dataplane.kubeproxy import MASQ_MARK, ProxyPlan

# (table, built-in chain, rule spec): the jumps into labkit's chains, as kube-proxy
# (and, for KUBE-FIREWALL, the kubelet) installs them.
HOOKS: tuple[tuple[str, str, str], ...] = (
    ("nat", "PREROUTING", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "OUTPUT", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "POSTROUTING", '-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'),
    ("filter", "INPUT", "-m conntrack --ctstate NEW -m comment --comment "
     '"kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL'),
    ("filter", "INPUT", '-m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS'),
    ("filter", "INPUT", "-m conntrack --ctstate NEW -m comment --comment "
     '"kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES'),
    ("filter", "INPUT", "-j KUBE-FIREWALL"),
    ("filter", "FORWARD", "-m conntrack --ctstate NEW -m comment --comment "
     '"kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL'),
    ("filter", "FORWARD", '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD'),
    ("filter", "FORWARD", "-m conntrack --ctstate NEW -m comment --comment "
     '"kubernetes service portals" -j KUBE-SERVICES'),
    ("filter", "FORWARD", "-m conntrack --ctstate NEW -m comment --comment "
     '"kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES'),
    ("filter", "OUTPUT", "-m conntrack --ctstate NEW -m comment --comment "
     '"kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL'),
    ("filter", "OUTPUT", "-m conntrack --ctstate NEW -m comment --comment "
     '"kubernetes service portals" -j KUBE-SERVICES'),
    ("filter", "OUTPUT", "-j KUBE-FIREWALL"),
)  # fmt: skip

# KUBE-FIREWALL is always declared (the hooks jump to it); it has its rule only
# with localhost node ports, as kube-proxy writes it.
FILTER_CHAINS = (
    "KUBE-NODEPORTS", "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FIREWALL",
    "KUBE-FORWARD", "KUBE-PROXY-FIREWALL",
)  # fmt: skip
NAT_CHAINS = ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ")
LOCALHOST = "127.0.0.0/8"
# route_localnet lets 127.0.0.1:<node port> be DNATed off the host; KUBE-FIREWALL
# drops the martians that would otherwise come in (kube-proxy's default).
LOCALHOST_NODE_PORT_SYSCTL = "net.ipv4.conf.all.route_localnet"


@dataclass(frozen=True)
class Features:
    """What kube-proxy probes on the host and writes accordingly (its fake has the
    opposite of a modern node: no --random-fully, nfacct counters)."""

    random_fully: bool = True
    nfacct: bool = False


# The default of every renderer: what a modern node has.
DEFAULT_FEATURES = Features()


def node_sysctls(plan: ProxyPlan) -> dict[str, str]:
    """The sysctls the node needs for the plan's rules (iptables mode)."""
    return {LOCALHOST_NODE_PORT_SYSCTL: "1" if plan.localhost_node_ports else "0"}


def comment(text: str) -> str:
    """`-m comment`, quoted the way iptables-save quotes (only when it has spaces)."""
    return f'-m comment --comment "{text}"' if " " in text else f"-m comment --comment {text}"


def forward_rules(features: Features = Features()) -> list[str]:
    """KUBE-FORWARD (drop invalid, accept marked and established), then COMMIT."""
    counter = "-m nfacct --nfacct-name ct_state_invalid_dropped_pkts " if features.nfacct else ""
    return [
        f"-A KUBE-FORWARD -m conntrack --ctstate INVALID {counter}-j DROP",
        f"-A KUBE-FORWARD {comment('kubernetes forwarding rules')} "
        f"-m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT",
        f"-A KUBE-FORWARD {comment('kubernetes forwarding conntrack rule')} "
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "COMMIT",
    ]


def masquerade_rules(features: Features = Features()) -> list[str]:
    """KUBE-POSTROUTING masquerades what KUBE-MARK-MASQ marked (the IPVS mode's too)."""
    fully = " --random-fully" if features.random_fully else ""
    return [
        f"-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN",
        f"-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}",
        f"-A KUBE-POSTROUTING {comment('kubernetes service traffic requiring SNAT')} "
        f"-j MASQUERADE{fully}",
        f"-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}",
    ]


def localhost_firewall_rules(plan: ProxyPlan) -> list[str]:
    """The martian drop that makes route_localnet safe (kube-proxy's and the kubelet's)."""
    if not plan.localhost_node_ports:
        return []
    return [
        f"-A KUBE-FIREWALL ! -s {LOCALHOST} -d {LOCALHOST} "
        f"{comment('block incoming localnet connections')} "
        "-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"
    ]


def node_ports_jump(plan: ProxyPlan) -> str:
    """KUBE-SERVICES' last rule: node ports on every local address (but 127/8 when off)."""
    note = comment("kubernetes service nodeports; NOTE: this must be the last rule in this chain")
    not_localhost = "" if plan.localhost_node_ports else f"! -d {LOCALHOST} "
    return f"-A KUBE-SERVICES {not_localhost}{note} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"
