"""kube-proxy's nftables mode, rendered as an `nft -f` payload (one transaction).

One `table ip labkit-proxy` of labkit's own, laid out as kube-proxy's
`table ip kube-proxy`: verdict maps from (VIP, protocol, port) and from
(protocol, node port) to a chain per service port, which picks an endpoint
with `numgen random mod n` and jumps to a chain per endpoint doing the
`dnat`. Services without endpoints are rejected from a filter-hook map.
Lookups are hash-map lookups, so the cost of the first packet does not grow
with the number of services (iptables' KUBE-SERVICES is a linear walk).

A full payload replaces the table atomically (add, delete, define). A partial
payload (the same partial sync as the iptables mode) rewrites only the chains
and map elements of the service ports that changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from labkit.dataplane.kubeproxy import (
    MASQ_MARK,
    EndpointPlan,
    ProxyPlan,
    ServicePortPlan,
    changed_services,
    owned_chains,
    proto_hash,
)

TABLE = "labkit-proxy"
FAMILY = "ip"
SERVICE_IPS = "service-ips"  # ipv4_addr . inet_proto . inet_service : verdict
SERVICE_NODEPORTS = "service-nodeports"  # inet_proto . inet_service : verdict
NO_ENDPOINT_SERVICES = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
LOCAL = "fib daddr type local ip daddr != 127.0.0.0/8"


def _base(service: ServicePortPlan) -> str:
    """kube-proxy's `namespace/name/protocol/portname`."""
    return f"{service.namespace}/{service.service}/{service.proto}/{service.port_name}"


def _hashed(name: str) -> str:
    """kube-proxy's hashAndTruncate: `HASH8-name`, the hash over the name itself.

    Written unquoted: nft's identifiers allow `/`, `.`, `-` and `_`."""
    return f"{proto_hash(name)[:8]}-{name}"


def service_chain(service: ServicePortPlan) -> str:
    return f"service-{_hashed(_base(service))}"


def external_chain(service: ServicePortPlan) -> str:
    return f"external-{_hashed(_base(service))}"


def _endpoint_base(service: ServicePortPlan, endpoint: EndpointPlan) -> str:
    return _hashed(f"{_base(service)}__{endpoint.ip}/{endpoint.port}")


def endpoint_chain(service: ServicePortPlan, endpoint: EndpointPlan) -> str:
    return f"endpoint-{_endpoint_base(service, endpoint)}"


def affinity_set(service: ServicePortPlan, endpoint: EndpointPlan) -> str:
    return f"affinity-{_endpoint_base(service, endpoint)}"


# -- the parts of one service port --------------------------------------------------


def service_chains(service: ServicePortPlan) -> list[str]:
    return owned_chains(service, service_chain, external_chain, endpoint_chain)


def service_sets(service: ServicePortPlan) -> list[str]:
    if service.affinity_seconds is None:
        return []
    return [affinity_set(service, e) for e in service.endpoints]


def _affinity_set_body(service: ServicePortPlan) -> str:
    """Client addresses, each forgotten after the affinity timeout."""
    return f"{{ type ipv4_addr; flags dynamic,timeout; timeout {service.affinity_seconds}s; }}"


def chain_rules(service: ServicePortPlan, cluster_cidr: str) -> dict[str, list[str]]:
    """Each chain of the service port and its rules (in order)."""
    proto = service.proto
    svc = service_chain(service)
    rules: dict[str, list[str]] = {
        svc: [
            f"ip daddr {service.vip} {proto} dport {service.port} "
            f"ip saddr != {cluster_cidr} jump mark-for-masquerade"
        ]
    }
    if service.affinity_seconds is not None:
        rules[svc] += [
            f"ip saddr @{affinity_set(service, e)} goto {endpoint_chain(service, e)}"
            for e in service.endpoints
        ]
    choices = ", ".join(
        f"{index} : goto {endpoint_chain(service, e)}" for index, e in enumerate(service.endpoints)
    )
    rules[svc].append(f"numgen random mod {len(service.endpoints)} vmap {{ {choices} }}")
    if service.node_port is not None:
        rules[external_chain(service)] = ["jump mark-for-masquerade", f"goto {svc}"]
    for endpoint in service.endpoints:
        body = [f"ip saddr {endpoint.ip} jump mark-for-masquerade"]
        if service.affinity_seconds is not None:
            body.append(f"update @{affinity_set(service, endpoint)} {{ ip saddr }}")
        body.append(f"meta l4proto {proto} dnat to {endpoint.address}")
        rules[endpoint_chain(service, endpoint)] = body
    return rules


def elements(service: ServicePortPlan) -> list[tuple[str, str]]:
    """(map, element) pairs of a service port: where its packets are sent."""
    if service.endpoints:
        ips, nodeports = SERVICE_IPS, SERVICE_NODEPORTS
        to_vip, to_node_port = service_chain(service), external_chain(service)
    else:
        ips, nodeports = NO_ENDPOINT_SERVICES, NO_ENDPOINT_NODEPORTS
        to_vip = to_node_port = "reject-chain"
    comment = f'comment "{service.name}"'
    vip_key = f"{service.vip} . {service.proto} . {service.port}"
    result = [(ips, f"{vip_key} {comment} : goto {to_vip}")]
    if service.node_port is not None:
        node_port_key = f"{service.proto} . {service.node_port}"
        result.append((nodeports, f"{node_port_key} {comment} : goto {to_node_port}"))
    return result


def _element_key(element: str) -> str:
    """The key part of an element (what `delete element` needs)."""
    return element.split(" comment ")[0]


# -- the fixed part of the table -------------------------------------------------


def _base_table() -> list[str]:
    cat = "ipv4_addr . inet_proto . inet_service"
    return [
        '\tcomment "rules for labkit\'s service proxy (kube-proxy nftables layout)"',
        f'\tmap {SERVICE_IPS} {{ type {cat} : verdict; comment "ClusterIP traffic"; }}',
        f"\tmap {SERVICE_NODEPORTS} {{ type inet_proto . inet_service : verdict; "
        'comment "NodePort traffic"; }',
        f"\tmap {NO_ENDPOINT_SERVICES} {{ type {cat} : verdict; "
        'comment "reject packets to services with no endpoints"; }',
        f"\tmap {NO_ENDPOINT_NODEPORTS} {{ type inet_proto . inet_service : verdict; "
        'comment "reject packets to node ports of services with no endpoints"; }',
        "\tchain nat-prerouting { type nat hook prerouting priority dstnat; policy accept; "
        "jump services; }",
        "\tchain nat-output { type nat hook output priority -100; policy accept; jump services; }",
        "\tchain nat-postrouting { type nat hook postrouting priority srcnat; policy accept; "
        "jump masquerading; }",
        "\tchain filter-input { type filter hook input priority -110; policy accept; "
        "ct state new jump nodeport-endpoints-check; ct state new jump service-endpoints-check; }",
        "\tchain filter-forward { type filter hook forward priority -110; policy accept; "
        "ct state new jump service-endpoints-check; }",
        "\tchain filter-output { type filter hook output priority -110; policy accept; "
        "ct state new jump service-endpoints-check; }",
        f"\tchain mark-for-masquerade {{ meta mark set meta mark or {MASQ_MARK}; }}",
        f"\tchain masquerading {{ meta mark and {MASQ_MARK} == 0 return; "
        f"meta mark set meta mark xor {MASQ_MARK}; masquerade fully-random; }}",
        "\tchain services { "
        f"ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}; "
        f"{LOCAL} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}; }}",
        "\tchain service-endpoints-check { "
        f"ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}; }}",
        "\tchain nodeport-endpoints-check { "
        f"{LOCAL} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}; }}",
        "\tchain reject-chain { reject; }",
    ]


def render_full(plan: ProxyPlan) -> str:
    """Replace the whole table in one transaction."""
    table = f"{FAMILY} {TABLE}"
    cidr = str(plan.cluster_cidr)
    lines = [f"add table {table}", f"delete table {table}", f"table {table} {{", *_base_table()]
    for service in plan.services:
        body = _affinity_set_body(service)
        lines += [f"\tset {name} {body}" for name in service_sets(service)]
    for service in plan.services:
        if not service.endpoints:
            continue
        for chain, rules in chain_rules(service, cidr).items():
            lines.append(f"\tchain {chain} {{")
            lines += [f"\t\t{rule}" for rule in rules]
            lines.append("\t}")
    lines.append("}")
    for map_name, element in (e for s in plan.services for e in elements(s)):
        lines.append(f"add element {table} {map_name} {{ {element} }}")
    return "\n".join(lines) + "\n"


def render_partial(old: ProxyPlan, new: ProxyPlan) -> str:
    """Rewrite only the chains, sets and map elements of the service ports that changed."""
    table = f"{FAMILY} {TABLE}"
    touched = sorted(changed_services(old, new))
    before, after = old.by_name(), new.by_name()
    cidr = str(new.cluster_cidr)

    def gather(
        plans: dict[tuple[str, str], ServicePortPlan], what: Callable[[ServicePortPlan], list[Any]]
    ) -> list[Any]:
        return [item for key in touched if key in plans for item in what(plans[key])]

    old_elements, new_elements = gather(before, elements), gather(after, elements)
    old_sets, new_sets = set(gather(before, service_sets)), set(gather(after, service_sets))
    stale = sorted(set(gather(before, service_chains)) - set(gather(after, service_chains)))
    lines = [
        f"delete element {table} {m} {{ {_element_key(e)} }}"
        for m, e in old_elements
        if (m, e) not in new_elements
    ]
    for key in touched:
        service = after.get(key)
        if service is None:
            continue
        lines += [
            f"add set {table} {name} {_affinity_set_body(service)}"
            for name in service_sets(service)
            if name not in old_sets
        ]
        rules = chain_rules(service, cidr) if service.endpoints else {}
        for chain in rules:
            lines += [f"add chain {table} {chain}", f"flush chain {table} {chain}"]
        for chain, body in rules.items():
            lines += [f"add rule {table} {chain} {rule}" for rule in body]
    lines += [
        f"add element {table} {m} {{ {e} }}" for m, e in new_elements if (m, e) not in old_elements
    ]
    # Stale chains: emptied first (a chain still jumped to cannot go), then deleted,
    # then the sets only they used.
    lines += [f"flush chain {table} {c}" for c in stale]
    lines += [f"delete chain {table} {c}" for c in stale]
    lines += [f"delete set {table} {s}" for s in sorted(old_sets - new_sets)]
    return "\n".join(lines) + "\n"


def rule_count(plan: ProxyPlan) -> int:
    """Rules in the table (map elements not counted): what the kernel walks, at most."""
    base = 13  # the fixed chains' rules
    cidr = str(plan.cluster_cidr)
    return base + sum(
        len(rules) for s in plan.services if s.endpoints for rules in chain_rules(s, cidr).values()
    )


def element_count(plan: ProxyPlan) -> int:
    return sum(len(elements(s)) for s in plan.services)
