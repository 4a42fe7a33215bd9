"""kube-proxy's iptables mode, rendered as an `iptables-restore --noflush` payload.

The chain layout and rule text are kube-proxy's (what `iptables-save` shows on
a Kubernetes node), so the rules read the same to someone who knows it:

    nat    PREROUTING/OUTPUT -> KUBE-SERVICES -> KUBE-SVC-<hash> (one per service port)
                                   -> KUBE-SEP-<hash> (one per endpoint, DNAT)
           KUBE-SERVICES' last rule: local destination -> KUBE-NODEPORTS -> KUBE-EXT-<hash>
           POSTROUTING -> KUBE-POSTROUTING: masquerade what KUBE-MARK-MASQ marked
    filter KUBE-SERVICES / KUBE-EXTERNAL-SERVICES: REJECT for services with no endpoints
           KUBE-FORWARD: accept marked and established forwarded traffic

Endpoints are picked with `-m statistic --mode random` at probability
1/(n-i), the last rule unconditional; ClientIP affinity uses `-m recent`.

A full payload declares (hence flushes) every chain labkit owns and deletes
the stale ones it is told about. A partial payload (kube-proxy's partial sync)
rewrites the top-level chains and only the chains of the service ports that
changed. The jumps from the built-in chains are not in the payload (the
built-in chains are shared with Docker and the CNI portmap plugin): `HOOKS`
lists them for the node script to ensure.
"""

from __future__ import annotations

from collections.abc import Iterable

from labkit.dataplane.kubeproxy import (
    MASQ_MARK,
    EndpointPlan,
    ProxyPlan,
    ServicePortPlan,
    changed_services,
    owned_chains,
    proto_hash,
)

# (table, built-in chain, rule spec): the jumps into labkit's chains, as kube-proxy installs them.
HOOKS: tuple[tuple[str, str, str], ...] = (
    ("nat", "PREROUTING", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "OUTPUT", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "POSTROUTING", '-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'),
    ("filter", "INPUT", "-m conntrack --ctstate NEW -m comment --comment "
     '"kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES'),
    ("filter", "FORWARD", '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD'),
    ("filter", "FORWARD", "-m conntrack --ctstate NEW -m comment --comment "
     '"kubernetes service portals" -j KUBE-SERVICES'),
    ("filter", "FORWARD", "-m conntrack --ctstate NEW -m comment --comment "
     '"kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES'),
    ("filter", "OUTPUT", "-m conntrack --ctstate NEW -m comment --comment "
     '"kubernetes service portals" -j KUBE-SERVICES'),
)  # fmt: skip

FILTER_CHAINS = ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD")
NAT_CHAINS = ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ")
# Chains per service port / endpoint: the ones found on a node and not wanted are stale.
SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-EXT-", "KUBE-SEP-")


def svc_chain(service: ServicePortPlan) -> str:
    return "KUBE-SVC-" + proto_hash(service.name, service.proto)


def ext_chain(service: ServicePortPlan) -> str:
    return "KUBE-EXT-" + proto_hash(service.name, service.proto)


def sep_chain(service: ServicePortPlan, endpoint: EndpointPlan) -> str:
    return "KUBE-SEP-" + proto_hash(service.name, service.proto, endpoint.address)


def comment(text: str) -> str:
    """`-m comment`, quoted the way iptables-save quotes (only when it has spaces)."""
    return f'-m comment --comment "{text}"' if " " in text else f"-m comment --comment {text}"


def _match(service: ServicePortPlan) -> str:
    return f"-p {service.proto}"


def service_chains(service: ServicePortPlan) -> list[str]:
    """The nat chains a service port owns (none without endpoints)."""
    return owned_chains(service, svc_chain, ext_chain, sep_chain)


def wanted_chains(plan: ProxyPlan) -> set[str]:
    return {chain for service in plan.services for chain in service_chains(service)}


def probability(index: int, count: int) -> str:
    """kube-proxy's `%0.10f` of 1/(n-i): each rule takes an equal share of what is left."""
    return f"{1.0 / (count - index):0.10f}"


# -- rules ------------------------------------------------------------------------


def service_entry_rules(service: ServicePortPlan) -> list[str]:
    """KUBE-SERVICES / KUBE-NODEPORTS rules (nat) of a service port with endpoints."""
    vip, proto, port = service.vip, service.proto, service.port
    rules = [
        f"-A KUBE-SERVICES -d {vip}/32 {_match(service)} "
        f"{comment(f'{service.name} cluster IP')} -m {proto} --dport {port} -j {svc_chain(service)}"
    ]
    if service.node_port is not None:
        rules.append(
            f"-A KUBE-NODEPORTS {_match(service)} {comment(service.name)} "
            f"-m {proto} --dport {service.node_port} -j {ext_chain(service)}"
        )
    return rules


def service_chain_rules(service: ServicePortPlan, cluster_cidr: str) -> list[str]:
    """The rules of a service port's own chains: KUBE-SVC, KUBE-EXT, KUBE-SEP."""
    svc, proto = svc_chain(service), service.proto
    rules = [
        f"-A {svc} ! -s {cluster_cidr} -d {service.vip}/32 {_match(service)} "
        f"{comment(f'{service.name} cluster IP')} -m {proto} --dport {service.port} "
        "-j KUBE-MARK-MASQ"
    ]
    if service.node_port is not None:
        ext = ext_chain(service)
        rules += [
            f"-A {ext} {comment(f'masquerade traffic for {service.name} external destinations')} "
            "-j KUBE-MARK-MASQ",
            f"-A {ext} -j {svc}",
        ]
    endpoints = service.endpoints
    if service.affinity_seconds is not None:
        # A client seen recently goes back to the endpoint it used (kube-proxy's order:
        # every affinity check before the random choice).
        for endpoint in endpoints:
            sep = sep_chain(service, endpoint)
            rules.append(
                f"-A {svc} {comment(f'{service.name} -> {endpoint.address}')} "
                f"-m recent --rcheck --seconds {service.affinity_seconds} --reap --name {sep} "
                f"--mask 255.255.255.255 --rsource -j {sep}"
            )
    for index, endpoint in enumerate(endpoints):
        sep = sep_chain(service, endpoint)
        pick = ""
        if index < len(endpoints) - 1:
            pick = f"-m statistic --mode random --probability {probability(index, len(endpoints))} "
        rules.append(f"-A {svc} {comment(f'{service.name} -> {endpoint.address}')} {pick}-j {sep}")
    for endpoint in endpoints:
        sep = sep_chain(service, endpoint)
        remember = ""
        if service.affinity_seconds is not None:
            remember = f"-m recent --set --name {sep} --mask 255.255.255.255 --rsource "
        rules += [
            f"-A {sep} -s {endpoint.ip}/32 {comment(service.name)} -j KUBE-MARK-MASQ",
            f"-A {sep} {_match(service)} {comment(service.name)} {remember}"
            f"-m {proto} -j DNAT --to-destination {endpoint.address}",
        ]
    return rules


def reject_rules(service: ServicePortPlan) -> list[str]:
    """filter rules of a service port with no endpoints: refuse at once, as Kubernetes does."""
    note = comment(f"{service.name} has no endpoints")
    proto, port = service.proto, service.port
    rules = [
        f"-A KUBE-SERVICES -d {service.vip}/32 {_match(service)} {note} "
        f"-m {proto} --dport {port} -j REJECT --reject-with icmp-port-unreachable"
    ]
    if service.node_port is not None:
        rules.append(
            f"-A KUBE-EXTERNAL-SERVICES {_match(service)} {note} -m addrtype --dst-type LOCAL "
            f"-m {proto} --dport {service.node_port} -j REJECT --reject-with icmp-port-unreachable"
        )
    return rules


def filter_section(plan: ProxyPlan) -> list[str]:
    lines = ["*filter", *(f":{chain} - [0:0]" for chain in FILTER_CHAINS)]
    for service in plan.services:
        if not service.endpoints:
            lines += reject_rules(service)
    return lines + forward_rules()


def forward_rules() -> list[str]:
    """KUBE-FORWARD (drop invalid, accept marked and established), then COMMIT."""
    return [
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
        f"-A KUBE-FORWARD {comment('kubernetes forwarding rules')} "
        f"-m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT",
        f"-A KUBE-FORWARD {comment('kubernetes forwarding conntrack rule')} "
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "COMMIT",
    ]


def masquerade_rules() -> list[str]:
    """KUBE-POSTROUTING masquerades what KUBE-MARK-MASQ marked (the IPVS mode's too)."""
    return [
        f"-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN",
        f"-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}",
        f"-A KUBE-POSTROUTING {comment('kubernetes service traffic requiring SNAT')} "
        "-j MASQUERADE --random-fully",
        f"-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}",
    ]


def _nat_top_rules(plan: ProxyPlan) -> list[str]:
    lines = masquerade_rules()
    for service in plan.services:
        if service.endpoints:
            lines += service_entry_rules(service)
    lines.append(
        "-A KUBE-SERVICES "
        f"{comment('kubernetes service nodeports; NOTE: this must be the last rule in this chain')} "
        "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"
    )
    return lines


def nat_section(
    plan: ProxyPlan, services: Iterable[ServicePortPlan], stale: Iterable[str]
) -> list[str]:
    """The nat table: top-level chains always, the chains of `services`, stale chains deleted."""
    services = list(services)
    stale = sorted(set(stale))
    chains = [*NAT_CHAINS]
    for service in services:
        chains += service_chains(service)
    lines = ["*nat", *(f":{chain} - [0:0]" for chain in [*chains, *stale])]
    lines += _nat_top_rules(plan)
    cidr = str(plan.cluster_cidr)
    for service in services:
        if service.endpoints:
            lines += service_chain_rules(service, cidr)
    lines += [f"-X {chain}" for chain in stale]
    lines.append("COMMIT")
    return lines


def _payload(plan: ProxyPlan, services: Iterable[ServicePortPlan], stale: Iterable[str]) -> str:
    return "\n".join([*filter_section(plan), *nat_section(plan, services, stale)]) + "\n"


def render_full(plan: ProxyPlan, existing_chains: Iterable[str] = ()) -> str:
    """Every chain labkit owns, rewritten; `existing_chains` found on the node and unwanted go."""
    stale = set(existing_chains) - wanted_chains(plan)
    stale = {c for c in stale if c.startswith(SERVICE_CHAIN_PREFIXES)}
    return _payload(plan, plan.services, stale)


def render_partial(old: ProxyPlan, new: ProxyPlan) -> str:
    """kube-proxy's partial sync: top-level chains plus the chains of changed service ports."""
    touched = changed_services(old, new)
    services = [s for s in new.services if (s.name, s.proto) in touched]
    return _payload(new, services, wanted_chains(old) - wanted_chains(new))


def rule_count(payload: str) -> int:
    return sum(1 for line in payload.splitlines() if line.startswith("-A "))
