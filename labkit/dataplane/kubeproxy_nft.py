"""kube-proxy's nftables mode, rendered as an `nft -f` payload (one transaction).

`table ip kube-proxy`, laid out as kube-proxy writes it (`pkg/proxy/nftables/proxier.go`):
verdict maps from (address, protocol, port) and from (protocol, node port) to a
chain per service port, which picks an endpoint with `numgen random mod n` and
jumps to a chain per endpoint doing the `dnat`. Services without endpoints are
rejected (or dropped, Local policies) from filter-hook maps; `cluster-ips-check`
rejects a wrong port on a ClusterIP and drops an unallocated service address;
`firewall-check` applies loadBalancerSourceRanges. Node ports answer only on
the `nodeport-ips` (kube-proxy's `--nodeport-addresses primary`).

A full payload does not delete the table: it (re)adds every object, flushes
chains and the service maps, and leaves the affinity sets' contents alone, so
a full sync keeps ClientIP affinity. Stale chains are flushed in one sync and
deleted in a later one (`stale_since_last`), as upstream does, because the
kernel may still hold a reference to a chain whose map element just went.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from labkit.dataplane.kubeproxy import (
    MASQ_MARK,
    EndpointPlan,
    ProxyPlan,
    ServicePortPlan,
    categorize,
    changed_services,
    proto_hash,
)

TABLE = "kube-proxy"  # the nft table name; everything outside dataplane/ must use this
FAMILY = "ip"
CLUSTER_IPS = "cluster-ips"
NODEPORT_IPS = "nodeport-ips"
SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
FIREWALL_IPS = "firewall-ips"
NO_ENDPOINT_SERVICES = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
# Chains per service port / endpoint (kube-proxy's isServiceChainName).
SERVICE_CHAIN_PREFIXES = ("service-", "local-", "external-", "firewall-", "endpoint-")
AFFINITY_PREFIX = "affinity-"
_CAT = "ipv4_addr . inet_proto . inet_service"

# (kind, name, body) of the fixed objects, and the maps/sets a full sync refills.
_SETS_AND_MAPS = (
    ("set", CLUSTER_IPS, '{ type ipv4_addr ; comment "Active ClusterIPs" ; }'),
    ("set", NODEPORT_IPS, '{ type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }'),
    ("map", FIREWALL_IPS, f'{{ type {_CAT} : verdict ; comment "destinations that are subject to LoadBalancerSourceRanges" ; }}'),
    ("map", NO_ENDPOINT_NODEPORTS, '{ type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }'),
    ("map", NO_ENDPOINT_SERVICES, f'{{ type {_CAT} : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }}'),
    ("map", SERVICE_IPS, f'{{ type {_CAT} : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }}'),
    ("map", SERVICE_NODEPORTS, '{ type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }'),
)  # fmt: skip
_BASE_CHAINS = (
    ("cluster-ips-check", ""),
    ("filter-prerouting-pre-dnat", "{ type filter hook prerouting priority -110 ; }"),
    ("filter-output-pre-dnat", "{ type filter hook output priority -110 ; }"),
    ("filter-forward", "{ type filter hook forward priority 0 ; }"),
    ("filter-input", "{ type filter hook input priority 0 ; }"),
    ("filter-output", "{ type filter hook output priority 0 ; }"),
    ("firewall-check", ""),
    ("mark-for-masquerade", ""),
    ("masquerading", ""),
    ("nat-output", "{ type nat hook output priority -100 ; }"),
    ("nat-postrouting", "{ type nat hook postrouting priority 100 ; }"),
    ("nat-prerouting", "{ type nat hook prerouting priority -100 ; }"),
    ("nodeport-endpoints-check", ""),
    ("reject-chain", '{ comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }'),
    ("services", ""),
    ("service-endpoints-check", ""),
)


def _base_rules(plan: ProxyPlan) -> list[tuple[str, str]]:
    """(chain, rule) of the fixed chains, in kube-proxy's order."""
    rules = [
        (
            "cluster-ips-check",
            f'ip daddr @{CLUSTER_IPS} reject comment "Reject traffic to invalid ports of ClusterIPs"',
        )
    ]
    if plan.service_cidr is not None:
        rules.append(
            (
                "cluster-ips-check",
                f'ip daddr {{ {plan.service_cidr} }} drop comment "Drop traffic to unallocated ClusterIPs"',
            )
        )
    check = "meta l4proto . th dport"
    rules += [
        ("filter-prerouting-pre-dnat", "ct state new jump firewall-check"),
        ("filter-forward", "ct state new jump service-endpoints-check"),
        ("filter-forward", "ct state new jump cluster-ips-check"),
        ("filter-input", "ct state new jump nodeport-endpoints-check"),
        ("filter-input", "ct state new jump service-endpoints-check"),
        ("filter-output", "ct state new jump service-endpoints-check"),
        ("filter-output-pre-dnat", "ct state new jump firewall-check"),
        ("filter-output", "ct state new jump cluster-ips-check"),
        ("firewall-check", f"ip daddr . {check} vmap @{FIREWALL_IPS}"),
        ("mark-for-masquerade", f"mark set mark or {MASQ_MARK}"),
        ("masquerading", f"mark and {MASQ_MARK} == 0 return"),
        ("masquerading", f"mark set mark xor {MASQ_MARK}"),
        ("masquerading", "masquerade fully-random"),
        ("nat-output", "jump services"),
        ("nat-postrouting", "jump masquerading"),
        ("nat-prerouting", "jump services"),
        (
            "nodeport-endpoints-check",
            f"ip daddr @{NODEPORT_IPS} {check} vmap @{NO_ENDPOINT_NODEPORTS}",
        ),
        ("reject-chain", "reject"),
        ("services", f"ip daddr . {check} vmap @{SERVICE_IPS}"),
        ("services", f"ip daddr @{NODEPORT_IPS} {check} vmap @{SERVICE_NODEPORTS}"),
        ("service-endpoints-check", f"ip daddr . {check} vmap @{NO_ENDPOINT_SERVICES}"),
    ]
    return rules  # fmt: skip


# -- names -------------------------------------------------------------------------


def _base(service: ServicePortPlan) -> str:
    """kube-proxy's `namespace/name/protocol/portname`."""
    return f"{service.namespace}/{service.service}/{service.proto}/{service.port_name}"


def _hashed(name: str) -> str:
    """kube-proxy's hashAndTruncate: `HASH8-name`, the hash over the name itself.

    Written unquoted: nft's identifiers allow `/`, `.`, `-` and `_`."""
    return f"{proto_hash(name)[:8]}-{name}"


def service_chain(service: ServicePortPlan) -> str:
    return f"service-{_hashed(_base(service))}"


def local_chain(service: ServicePortPlan) -> str:
    return f"local-{_hashed(_base(service))}"


def external_chain(service: ServicePortPlan) -> str:
    return f"external-{_hashed(_base(service))}"


def firewall_chain(service: ServicePortPlan) -> str:
    return f"firewall-{_hashed(_base(service))}"


def _endpoint_base(service: ServicePortPlan, endpoint: EndpointPlan) -> str:
    return _hashed(f"{_base(service)}__{endpoint.ip}/{endpoint.port}")


def endpoint_chain(service: ServicePortPlan, endpoint: EndpointPlan) -> str:
    return f"endpoint-{_endpoint_base(service, endpoint)}"


def affinity_set(service: ServicePortPlan, endpoint: EndpointPlan) -> str:
    return f"affinity-{_endpoint_base(service, endpoint)}"


# -- one service port -----------------------------------------------------------------


@dataclass
class ServiceObjects:
    """What one service port puts in the table."""

    sets: dict[str, str] = field(default_factory=dict)  # affinity sets: name -> body
    chains: dict[str, list[str]] = field(default_factory=dict)  # its chains, rules in order
    elements: list[tuple[str, str]] = field(default_factory=list)  # (set or map, element)


def service_objects(service: ServicePortPlan, plan: ProxyPlan) -> ServiceObjects:
    """kube-proxy's nftables syncProxyRules loop body for one service port, on `plan.node`."""
    out = ServiceObjects()
    eps = categorize(service, plan.node)
    has_any = eps.any
    has_internal = has_any and not (service.internal_local and not eps.local)
    has_external = has_any and not (service.external_local and not eps.local)
    cluster, local = service_chain(service), local_chain(service)
    internal = local if service.internal_local else cluster
    external_policy = local if service.external_local else cluster
    ext = external_chain(service)
    uses_fw = has_any and bool(service.lb_ips) and bool(service.source_ranges)
    proto, port, note = service.proto, service.port, f'comment "{service.name}"'
    internal_verdict = "goto reject-chain" if not has_any else "drop"
    external_verdict = internal_verdict

    def key(address: object) -> str:
        return f"{address} . {proto} . {port}"

    out.elements.append((CLUSTER_IPS, str(service.vip)))
    if has_internal:
        out.elements.append((SERVICE_IPS, f"{key(service.vip)} : goto {internal}"))
    else:
        out.elements.append(
            (NO_ENDPOINT_SERVICES, f"{key(service.vip)} {note} : {internal_verdict}")
        )
    for address in (*service.external_ips, *service.lb_ips):
        if has_any:
            out.elements.append((SERVICE_IPS, f"{key(address)} : goto {ext}"))
        if not has_external:
            out.elements.append(
                (NO_ENDPOINT_SERVICES, f"{key(address)} {note} : {external_verdict}")
            )
    if uses_fw:
        fw = firewall_chain(service)
        out.elements += [(FIREWALL_IPS, f"{key(a)} : goto {fw}") for a in service.lb_ips]
    if service.node_port is not None:
        node_port = f"{proto} . {service.node_port}"
        if has_any:
            out.elements.append((SERVICE_NODEPORTS, f"{node_port} : goto {ext}"))
        if not has_external:
            out.elements.append((NO_ENDPOINT_NODEPORTS, f"{node_port} {note} : {external_verdict}"))

    chains = out.chains
    if has_internal:
        chains.setdefault(internal, []).append(
            f"ip daddr {service.vip} ip saddr != {plan.cluster_cidr} jump mark-for-masquerade"
        )
    if has_any and service.externally_accessible:
        rules = chains.setdefault(ext, [])
        if not service.external_local:
            rules.append("jump mark-for-masquerade")
        else:
            rules += [
                f'ip saddr {plan.cluster_cidr} goto {cluster} comment "short-circuit pod traffic"',
                'fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"',
                f'fib saddr type local goto {cluster} comment "short-circuit local traffic"',
            ]
        if has_external:
            rules.append(f"goto {external_policy}")
    if uses_fw:
        sources = [str(c) for c in service.source_ranges]
        if any(ip in c for c in service.source_ranges for ip in plan.node_ips):
            sources += [str(a) for a in service.lb_ips]
        chains[firewall_chain(service)] = [f"ip saddr != {{ {', '.join(sources)} }} drop"]
    if eps.cluster and service.uses_cluster_endpoints:
        chains.setdefault(cluster, []).extend(_to_endpoints(service, eps.cluster))
    if eps.local and service.uses_local_endpoints:
        chains.setdefault(local, []).extend(_to_endpoints(service, eps.local))
    for endpoint in eps.reachable:
        body = [f"ip saddr {endpoint.ip} jump mark-for-masquerade"]
        if service.affinity_seconds is not None:
            name = affinity_set(service, endpoint)
            out.sets[name] = (
                "{ type ipv4_addr ; flags dynamic,timeout ; "
                f"timeout {service.affinity_seconds}s ; }}"
            )
            body.append(f"update @{name} {{ ip saddr }}")
        body.append(f"meta l4proto {proto} dnat to {endpoint.address}")
        chains[endpoint_chain(service, endpoint)] = body
    return out


def _to_endpoints(service: ServicePortPlan, endpoints: tuple[EndpointPlan, ...]) -> list[str]:
    rules = []
    if service.affinity_seconds is not None:
        rules += [
            f"ip saddr @{affinity_set(service, e)} goto {endpoint_chain(service, e)}"
            for e in endpoints
        ]
    choices = " , ".join(
        f"{index} : goto {endpoint_chain(service, e)}" for index, e in enumerate(endpoints)
    )
    rules.append(f"numgen random mod {len(endpoints)} vmap {{ {choices} }}")
    return rules


def service_chains(service: ServicePortPlan, plan: ProxyPlan) -> list[str]:
    return list(service_objects(service, plan).chains)


def service_sets(service: ServicePortPlan, plan: ProxyPlan) -> list[str]:
    return list(service_objects(service, plan).sets)


def active_chains(plan: ProxyPlan) -> set[str]:
    return {c for s in plan.services for c in service_chains(s, plan)}


def stale_chains(plan: ProxyPlan, existing: Iterable[str]) -> set[str]:
    """Service chains found on the node and not in the plan: flushed now, deleted next sync."""
    base = {name for name, _ in _BASE_CHAINS}  # service-endpoints-check, firewall-check
    ours = {c for c in existing if c.startswith(SERVICE_CHAIN_PREFIXES) and c not in base}
    return ours - active_chains(plan)


# -- payloads ------------------------------------------------------------------------


def _t() -> str:
    return f"{FAMILY} {TABLE}"


def _element_key(element: str) -> str:
    """The key part of an element (what `delete element` needs)."""
    return element.split(" comment ")[0].split(" : ")[0]


def _objects_lines(objects: list[ServiceObjects], existing_sets: set[str] | None) -> list[str]:
    """Sets and chains first, then the rules (a rule may jump to a chain declared after
    its own), then, for a full payload (`existing_sets` None), the elements.
    `existing_sets`: the sets already there, not added again (partial payload)."""
    t = _t()
    lines = []
    for obj in objects:
        lines += [
            f"add set {t} {n} {b}" for n, b in obj.sets.items() if n not in (existing_sets or ())
        ]
        for chain in obj.chains:
            lines += [f"add chain {t} {chain}", f"flush chain {t} {chain}"]
    for obj in objects:
        for chain, rules in obj.chains.items():
            lines += [f"add rule {t} {chain} {rule}" for rule in rules]
    if existing_sets is None:
        lines += [f"add element {t} {m} {{ {e} }}" for obj in objects for m, e in obj.elements]
    return lines


def _delete_stale(stale_since_last: Iterable[str], plan: ProxyPlan, present: set[str]) -> list[str]:
    active = active_chains(plan)
    return [
        f"delete chain {_t()} {c}" for c in sorted(set(stale_since_last) - active) if c in present
    ]


def render_full(
    plan: ProxyPlan,
    existing: Iterable[str] = (),
    stale_since_last: Iterable[str] = (),
) -> str:
    """Every object (re)added, chains and service maps flushed and refilled, affinity kept.

    `existing`: the chain and set names found in the table; `stale_since_last`: what
    `stale_chains` returned at the previous sync (deleted now, if still unused)."""
    t = _t()
    found = set(existing)
    objects = [service_objects(s, plan) for s in plan.services]
    lines = [f'add table {t} {{ comment "rules for kube-proxy" ; }}']
    lines += [f"add {kind} {t} {name} {body}" for kind, name, body in _SETS_AND_MAPS]
    lines += [f"flush {kind} {t} {name}" for kind, name, _ in _SETS_AND_MAPS]
    for name, body in _BASE_CHAINS:
        lines += [f"add chain {t} {name}{' ' + body if body else ''}", f"flush chain {t} {name}"]
    lines += [f"add rule {t} {chain} {rule}" for chain, rule in _base_rules(plan)]
    lines += [f"add element {t} {NODEPORT_IPS} {{ {ip} }}" for ip in plan.node_ips]
    lines += _objects_lines(objects, existing_sets=None)
    lines += [f"flush chain {t} {c}" for c in sorted(stale_chains(plan, found))]
    lines += _delete_stale(stale_since_last, plan, found)
    wanted_sets = {n for obj in objects for n in obj.sets}
    lines += [
        f"delete set {t} {s}"
        for s in sorted(found)
        if s.startswith(AFFINITY_PREFIX) and s not in wanted_sets
    ]
    return "\n".join(lines) + "\n"


def partial_stale_chains(old: ProxyPlan, new: ProxyPlan) -> set[str]:
    """The chains a partial sync from `old` to `new` leaves flushed (to delete next sync)."""
    return active_chains(old) - active_chains(new)


def render_partial(old: ProxyPlan, new: ProxyPlan, stale_since_last: Iterable[str] = ()) -> str:
    """Rewrite only the chains, sets and elements of the service ports that changed."""
    t = _t()
    touched = changed_services(old, new)
    before = {k: service_objects(s, old) for k, s in old.by_name().items() if k in touched}
    after = {k: service_objects(s, new) for k, s in new.by_name().items() if k in touched}
    old_elements = [e for o in before.values() for e in o.elements]
    new_elements = [e for o in after.values() for e in o.elements]
    old_sets = {n for o in before.values() for n in o.sets}
    lines = [
        f"delete element {t} {m} {{ {_element_key(e)} }}"
        for m, e in old_elements
        if (m, e) not in new_elements
        and not (m == CLUSTER_IPS and any(n == (m, e) for n in new_elements))
    ]
    lines += _objects_lines(list(after.values()), existing_sets=old_sets)
    lines += [
        f"add element {t} {m} {{ {e} }}" for m, e in new_elements if (m, e) not in old_elements
    ]
    lines += [f"flush chain {t} {c}" for c in sorted(partial_stale_chains(old, new))]
    still = set(stale_since_last) - active_chains(new)
    lines += [f"delete chain {t} {c}" for c in sorted(still)]
    new_sets = {n for o in after.values() for n in o.sets}
    lines += [f"delete set {t} {s}" for s in sorted(old_sets - new_sets)]
    return "\n".join(lines) + "\n"


def rule_count(plan: ProxyPlan) -> int:
    """Rules in the table (map elements not counted): what the kernel walks, at most."""
    return len(_base_rules(plan)) + sum(
        len(rules) for s in plan.services for rules in service_objects(s, plan).chains.values()
    )


def element_count(plan: ProxyPlan) -> int:
    return sum(len(service_objects(s, plan).elements) for s in plan.services)
