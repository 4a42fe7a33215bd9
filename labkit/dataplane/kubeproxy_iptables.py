"""kube-proxy's iptables mode, rendered as an `iptables-restore --noflush` payload.

The chain layout and rule text are kube-proxy's (`pkg/proxy/iptables/proxier.go`),
written in the order `iptables-save` shows them on a node:

    nat    PREROUTING/OUTPUT -> KUBE-SERVICES -> KUBE-SVC-<hash> (Cluster policy endpoints)
                                              -> KUBE-SVL-<hash> (Local policy endpoints)
                                              -> KUBE-SEP-<hash> (one per endpoint, DNAT)
           external IPs, LoadBalancer IPs and node ports -> KUBE-EXT-<hash>
           (through KUBE-FW-<hash> when loadBalancerSourceRanges are set)
           KUBE-SERVICES' last rule: local destination -> KUBE-NODEPORTS
           POSTROUTING -> KUBE-POSTROUTING: masquerade what KUBE-MARK-MASQ marked
    filter KUBE-SERVICES / KUBE-EXTERNAL-SERVICES: REJECT without endpoints, DROP
           without local endpoints (Local policies); KUBE-NODEPORTS accepts health
           check node ports; KUBE-PROXY-FIREWALL drops what KUBE-FW let through;
           KUBE-FIREWALL: the martian drop that makes route_localnet safe;
           KUBE-FORWARD: accept marked and established forwarded traffic

Endpoints are picked with `-m statistic --mode random` at probability
1/(n-i), the last rule unconditional; ClientIP affinity uses `-m recent`.

A full payload declares (hence flushes) every chain labkit owns and deletes
the stale ones it is told about. A partial payload (kube-proxy's partial sync)
rewrites the top-level chains and only the chains of the service ports that
changed. The jumps from the built-in chains are not in the payload (the
built-in chains are shared with Docker and the CNI portmap plugin): `HOOKS`
lists them for the node script to ensure.

The fixed chains and the hooks live in `labkit.dataplane.kubeproxy_iptables_fixed`
and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from labkit.dataplane.kubeproxy import (
    EndpointPlan,
    ProxyPlan,
    ServicePortPlan,
    categorize,
    changed_services,
    proto_hash,
)
from labkit.dataplane.kubeproxy_iptables_fixed import (
    DEFAULT_FEATURES,
    FILTER_CHAINS,
    HOOKS,
    LOCALHOST,
    LOCALHOST_NODE_PORT_SYSCTL,
    NAT_CHAINS,
    Features,
    comment,
    forward_rules,
    localhost_firewall_rules,
    masquerade_rules,
    node_ports_jump,
    node_sysctls,
)

# Re-exported: callers reach the whole iptables mode through this module.
__all__ = [
    "DEFAULT_FEATURES",
    "FILTER_CHAINS",
    "HOOKS",
    "LOCALHOST",
    "LOCALHOST_NODE_PORT_SYSCTL",
    "NAT_CHAINS",
    "SERVICE_CHAIN_PREFIXES",
    "Features",
    "ServiceRules",
    "comment",
    "ext_chain",
    "filter_section",
    "forward_rules",
    "fw_chain",
    "localhost_firewall_rules",
    "masquerade_rules",
    "nat_section",
    "node_ports_jump",
    "node_sysctls",
    "probability",
    "render_full",
    "render_partial",
    "rule_count",
    "sep_chain",
    "service_chains",
    "service_rules",
    "svc_chain",
    "svl_chain",
    "wanted_chains",
]

# Chains per service port / endpoint (kube-proxy's isServiceChainName): the ones
# found on a node and not wanted are stale.
SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")


def _hash(service: ServicePortPlan) -> str:
    return proto_hash(service.name, service.proto)


def svc_chain(service: ServicePortPlan) -> str:
    return "KUBE-SVC-" + _hash(service)


def svl_chain(service: ServicePortPlan) -> str:
    return "KUBE-SVL-" + _hash(service)


def ext_chain(service: ServicePortPlan) -> str:
    return "KUBE-EXT-" + _hash(service)


def fw_chain(service: ServicePortPlan) -> str:
    return "KUBE-FW-" + _hash(service)


def sep_chain(service: ServicePortPlan, endpoint: EndpointPlan) -> str:
    return "KUBE-SEP-" + proto_hash(service.name, service.proto, endpoint.address)


def probability(index: int, count: int) -> str:
    """kube-proxy's `%0.10f` of 1/(n-i): each rule takes an equal share of what is left."""
    return f"{1.0 / (count - index):0.10f}"


def _target(verdict: str) -> str:
    return "REJECT --reject-with icmp-port-unreachable" if verdict == "REJECT" else verdict


# -- one service port ------------------------------------------------------------


@dataclass
class ServiceRules:
    """What one service port writes: filter rules, nat entry rules, its own nat chains."""

    filter: list[str] = field(default_factory=list)
    nat: list[str] = field(default_factory=list)  # KUBE-SERVICES / KUBE-NODEPORTS
    chains: dict[str, list[str]] = field(default_factory=dict)  # its own nat chains


def service_rules(
    service: ServicePortPlan, plan: ProxyPlan, features: Features = DEFAULT_FEATURES
) -> ServiceRules:
    """kube-proxy's syncProxyRules loop body for one service port, on `plan.node`."""
    out = ServiceRules()
    name, proto, port = service.name, service.proto, service.port
    eps = categorize(service, plan.node)
    has_any = eps.any
    has_internal = has_any and not (service.internal_local and not eps.local)
    has_external = has_any and not (service.external_local and not eps.local)
    uses_cluster = bool(eps.cluster) and service.uses_cluster_endpoints
    uses_local = bool(eps.local) and service.uses_local_endpoints
    cluster_chain, local_chain = svc_chain(service), svl_chain(service)
    internal_chain = local_chain if service.internal_local else cluster_chain
    external_policy_chain = local_chain if service.external_local else cluster_chain
    ext = ext_chain(service)
    uses_ext = has_any and service.externally_accessible
    uses_fw = has_any and bool(service.lb_ips) and bool(service.source_ranges)
    lb_chain = fw_chain(service) if uses_fw else ext
    if not has_any:
        internal_verdict = external_verdict = "REJECT"
        internal_note = external_note = f"{name} has no endpoints"
    else:
        internal_verdict = external_verdict = "DROP"
        internal_note = external_note = f"{name} has no local endpoints"

    def to(address: object, note: str) -> str:
        return f"-d {address}/32 -p {proto} {comment(note)} -m {proto} --dport {port}"

    if has_internal:
        out.nat.append(
            f"-A KUBE-SERVICES {to(service.vip, f'{name} cluster IP')} -j {internal_chain}"
        )
    else:
        out.filter.append(
            f"-A KUBE-SERVICES {to(service.vip, internal_note)} -j {_target(internal_verdict)}"
        )
    for address in service.external_ips:
        if has_any:
            out.nat.append(f"-A KUBE-SERVICES {to(address, f'{name} external IP')} -j {ext}")
        if not has_external:
            out.filter.append(
                f"-A KUBE-EXTERNAL-SERVICES {to(address, external_note)} "
                f"-j {_target(external_verdict)}"
            )
    for address in service.lb_ips:
        if has_any:
            out.nat.append(
                f"-A KUBE-SERVICES {to(address, f'{name} loadbalancer IP')} -j {lb_chain}"
            )
        if uses_fw:
            note = f"{name} traffic not accepted by {fw_chain(service)}"
            out.filter.append(f"-A KUBE-PROXY-FIREWALL {to(address, note)} -j DROP")
    if not has_external:
        for address in service.lb_ips:
            out.filter.append(
                f"-A KUBE-EXTERNAL-SERVICES {to(address, external_note)} "
                f"-j {_target(external_verdict)}"
            )
    if service.node_port is not None:
        node_port = f"-m {proto} --dport {service.node_port}"
        if has_any:
            if plan.localhost_node_ports and features.nfacct:
                out.nat.append(
                    f"-A KUBE-NODEPORTS -d {LOCALHOST} -p {proto} {comment(name)} {node_port} "
                    f"-m nfacct --nfacct-name localhost_nps_accepted_pkts -j {ext}"
                )
            out.nat.append(f"-A KUBE-NODEPORTS -p {proto} {comment(name)} {node_port} -j {ext}")
        if not has_external:
            out.filter.append(
                f"-A KUBE-EXTERNAL-SERVICES -p {proto} {comment(external_note)} "
                f"-m addrtype --dst-type LOCAL {node_port} -j {_target(external_verdict)}"
            )
    if service.health_check_node_port is not None:
        out.filter.append(
            f"-A KUBE-NODEPORTS -p tcp {comment(f'{name} health check node port')} "
            f"-m tcp --dport {service.health_check_node_port} -j ACCEPT"
        )

    chains = out.chains
    if has_internal:
        chains.setdefault(internal_chain, []).append(
            f"-A {internal_chain} ! -s {plan.cluster_cidr} {to(service.vip, f'{name} cluster IP')} "
            "-j KUBE-MARK-MASQ"
        )
    if uses_ext:
        rules = chains.setdefault(ext, [])
        if not service.external_local:
            note = f"masquerade traffic for {name} external destinations"
            rules.append(f"-A {ext} {comment(note)} -j KUBE-MARK-MASQ")
        else:
            pods = f"pod traffic for {name} external destinations"
            masq = f"masquerade LOCAL traffic for {name} external destinations"
            route = f"route LOCAL traffic for {name} external destinations"
            rules += [
                f"-A {ext} -s {plan.cluster_cidr} {comment(pods)} -j {cluster_chain}",
                f"-A {ext} {comment(masq)} -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ",
                f"-A {ext} {comment(route)} -m addrtype --src-type LOCAL -j {cluster_chain}",
            ]
        if has_external:
            rules.append(f"-A {ext} -j {external_policy_chain}")
    if uses_fw:
        fw = fw_chain(service)
        note = comment(f"{name} loadbalancer IP")
        rules = chains.setdefault(fw, [])
        rules += [f"-A {fw} -s {cidr} {note} -j {ext}" for cidr in service.source_ranges]
        if any(ip in cidr for cidr in service.source_ranges for ip in plan.node_ips):
            rules += [f"-A {fw} -s {ip}/32 {note} -j {ext}" for ip in service.lb_ips]
        rules.append(
            f"-A {fw} {comment(f'other traffic to {name} will be dropped by KUBE-PROXY-FIREWALL')}"
        )
    if uses_cluster:
        chains.setdefault(cluster_chain, []).extend(
            _to_endpoints(service, cluster_chain, eps.cluster)
        )
    if uses_local:
        chains.setdefault(local_chain, []).extend(_to_endpoints(service, local_chain, eps.local))
    for endpoint in eps.reachable:
        chains[sep_chain(service, endpoint)] = _endpoint_rules(service, endpoint)
    return out


def _to_endpoints(
    service: ServicePortPlan, chain: str, endpoints: tuple[EndpointPlan, ...]
) -> list[str]:
    """kube-proxy's writeServiceToEndpointRules: affinity checks first, then the random pick."""
    rules = []
    if service.affinity_seconds is not None:
        for endpoint in endpoints:
            sep = sep_chain(service, endpoint)
            rules.append(
                f"-A {chain} {comment(f'{service.name} -> {endpoint.address}')} "
                f"-m recent --rcheck --seconds {service.affinity_seconds} --reap --name {sep} "
                f"--mask 255.255.255.255 --rsource -j {sep}"
            )
    for index, endpoint in enumerate(endpoints):
        pick = ""
        if index < len(endpoints) - 1:
            pick = f"-m statistic --mode random --probability {probability(index, len(endpoints))} "
        rules.append(
            f"-A {chain} {comment(f'{service.name} -> {endpoint.address}')} {pick}"
            f"-j {sep_chain(service, endpoint)}"
        )
    return rules


def _endpoint_rules(service: ServicePortPlan, endpoint: EndpointPlan) -> list[str]:
    sep, proto = sep_chain(service, endpoint), service.proto
    remember = ""
    if service.affinity_seconds is not None:
        remember = f"-m recent --set --name {sep} --mask 255.255.255.255 --rsource "
    return [
        f"-A {sep} -s {endpoint.ip}/32 {comment(service.name)} -j KUBE-MARK-MASQ",
        f"-A {sep} -p {proto} {comment(service.name)} {remember}"
        f"-m {proto} -j DNAT --to-destination {endpoint.address}",
    ]


def service_chains(service: ServicePortPlan, plan: ProxyPlan) -> list[str]:
    """The nat chains a service port owns on the plan's node (none without endpoints)."""
    return list(service_rules(service, plan).chains)


def wanted_chains(plan: ProxyPlan) -> set[str]:
    return {chain for service in plan.services for chain in service_chains(service, plan)}


# -- tables ------------------------------------------------------------------------


def filter_section(
    plan: ProxyPlan, rules: Iterable[ServiceRules], features: Features = DEFAULT_FEATURES
) -> list[str]:
    lines = ["*filter", *(f":{chain} - [0:0]" for chain in FILTER_CHAINS)]
    for service in rules:
        lines += service.filter
    lines += localhost_firewall_rules(plan)
    return lines + forward_rules(features)


def nat_section(
    plan: ProxyPlan,
    services: Iterable[ServicePortPlan],
    stale: Iterable[str],
    features: Features = DEFAULT_FEATURES,
) -> list[str]:
    """The nat table: top-level chains always, the chains of `services`, stale chains deleted."""
    written = {(s.name, s.proto) for s in services}
    stale = sorted(set(stale))
    every = [(s, service_rules(s, plan, features)) for s in plan.services]
    own = {
        name: body
        for s, r in every
        if (s.name, s.proto) in written
        for name, body in r.chains.items()
    }
    lines = ["*nat", *(f":{chain} - [0:0]" for chain in [*NAT_CHAINS, *own, *stale])]
    lines += masquerade_rules(features)
    for _, rules in every:
        lines += rules.nat
    lines.append(node_ports_jump(plan))
    for body in own.values():
        lines += body
    lines += [f"-X {chain}" for chain in stale]
    lines.append("COMMIT")
    return lines


def _payload(
    plan: ProxyPlan,
    services: Iterable[ServicePortPlan],
    stale: Iterable[str],
    features: Features,
) -> str:
    rules = [service_rules(s, plan, features) for s in plan.services]
    filter_lines = filter_section(plan, rules, features)
    return "\n".join([*filter_lines, *nat_section(plan, services, stale, features)]) + "\n"


def render_full(
    plan: ProxyPlan, existing_chains: Iterable[str] = (), features: Features = DEFAULT_FEATURES
) -> str:
    """Every chain labkit owns, rewritten; `existing_chains` found on the node and unwanted go."""
    stale = set(existing_chains) - wanted_chains(plan)
    stale = {c for c in stale if c.startswith(SERVICE_CHAIN_PREFIXES)}
    return _payload(plan, plan.services, stale, features)


def render_partial(old: ProxyPlan, new: ProxyPlan, features: Features = DEFAULT_FEATURES) -> str:
    """kube-proxy's partial sync: top-level chains plus the chains of changed service ports."""
    touched = changed_services(old, new)
    services = [s for s in new.services if (s.name, s.proto) in touched]
    return _payload(new, services, wanted_chains(old) - wanted_chains(new), features)


def rule_count(payload: str) -> int:
    return sum(1 for line in payload.splitlines() if line.startswith("-A "))
