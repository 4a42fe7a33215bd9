"""Which UDP conntrack entries a change leaves wrong, as kube-proxy's
`pkg/proxy/conntrack/cleanup.go` decides it. Pure: the node runs the commands.

UDP has no connection to end, so a client keeps its conntrack entry (and its
DNAT) for as long as it keeps sending. After a change, an entry is wrong when
 - its reply source is an endpoint that no longer serves the service port
   (to the ClusterIP, an external IP, a LoadBalancer IP, or the node port), or
 - the service port had no endpoints and now has some (0 -> N): its entries
   carry the REJECT of before, so every entry to its addresses and node port goes.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from labkit.dataplane.kubeproxy import ProxyPlan, ServicePortPlan, categorize

SILENT = " >/dev/null 2>&1 || true"  # nothing to delete is not a failure


def _serving(service: ServicePortPlan, plan: ProxyPlan) -> set[IPv4Address]:
    return {e.ip for e in categorize(service, plan.node).reachable}


def _addresses(service: ServicePortPlan) -> list[IPv4Address]:
    return [service.vip, *service.external_ips, *service.lb_ips]


def cleanup_commands(old: ProxyPlan, new: ProxyPlan) -> list[str]:
    """`conntrack -D` commands for the UDP entries the change from `old` to `new` left wrong."""
    commands: list[str] = []
    before = old.by_name()
    for key, service in new.by_name().items():
        if service.proto != "udp":
            continue
        previous = before.get(key)
        now = _serving(service, new)
        was = _serving(previous, old) if previous is not None else set()
        if now and not was:
            commands += [
                f"conntrack -D -p udp --orig-dst {a} --orig-port-dst {service.port}"
                for a in _addresses(service)
            ]
            if service.node_port is not None:
                commands.append(f"conntrack -D -p udp --orig-port-dst {service.node_port}")
        if previous is None:
            continue
        for gone in sorted(was - now):
            commands += [
                f"conntrack -D -p udp --orig-dst {a} --orig-port-dst {previous.port} --reply-src {gone}"
                for a in _addresses(previous)
            ]
            if previous.node_port is not None:
                commands.append(
                    f"conntrack -D -p udp --orig-port-dst {previous.node_port} --reply-src {gone}"
                )
    for key, previous in before.items():
        if previous.proto == "udp" and key not in new.by_name():
            commands += [
                f"conntrack -D -p udp --orig-dst {a} --orig-port-dst {previous.port}"
                for a in _addresses(previous)
            ]
            if previous.node_port is not None:
                commands.append(f"conntrack -D -p udp --orig-port-dst {previous.node_port}")
    return [command + SILENT for command in commands]
