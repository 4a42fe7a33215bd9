"""labkit's own checks of manifests, beyond their schemas: what the API server would not
catch but a user would want to know before running anything."""

from __future__ import annotations

from collections.abc import Iterator

from labkit.errors import Problem
from labkit.topology.kube.converted import Converted
from labkit.topology.model import Topology, key_name
from labkit.topology.selectors import selector_matches
from labkit.topology.services_alloc import selects


def kube_problems(
    merged: Topology, native: Topology, converted: list[Converted]
) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings)."""
    errors = list(_collisions(native, converted)) + list(_policy_port_names(merged, converted))
    warnings = list(_services_selecting_nothing(merged, converted))
    return errors, warnings


def _collisions(native: Topology, converted: list[Converted]) -> Iterator[Problem]:
    """A manifest object with the namespace and name of one of the topology file's."""
    for item in converted:
        if item.section not in ("pods", "services", "policies"):
            if item.section == "namespaces" and item.key in native.namespaces:
                yield item.document.problem(
                    ("metadata", "name"), f"namespace {item.key!r} is in the topology file already"
                )
            continue
        namespace, name = item.value["namespace"], key_name(item.key)
        for key, obj in getattr(native, item.section).items():
            if obj.namespace == namespace and key_name(key) == name and key != item.key:
                yield item.document.problem(
                    ("metadata", "name"),
                    f"{item.section[:-1]} {namespace}/{name} is in the topology file already "
                    f"(as {key!r})",
                )


def _policy_port_names(merged: Topology, converted: list[Converted]) -> Iterator[Problem]:
    """A named port in a policy that no pod it can mean declares."""
    for item in converted:
        if item.section != "policies":
            continue
        policy = merged.policies[item.key]
        selected = [
            pod
            for pod in merged.pods.values()
            if pod.namespace == policy.namespace
            and selector_matches(policy.pod_selector, pod.labels)
        ]
        directions = [("ingress", rule.ports, selected) for rule in policy.ingress]
        directions += [("egress", rule.ports, list(merged.pods.values())) for rule in policy.egress]
        counters = {"ingress": 0, "egress": 0}
        for direction, ports, pods in directions:
            index = counters[direction]
            counters[direction] += 1
            for at, port in enumerate(ports):
                if not isinstance(port.port, str):
                    continue
                declared = {(p.name, p.protocol) for pod in pods for p in pod.ports}
                if (port.port, port.protocol) not in declared:
                    whose = "the pods it selects" if direction == "ingress" else "any pod"
                    yield item.document.problem(
                        ("spec", direction, index, "ports", at, "port"),
                        f"no {port.protocol} port named {port.port!r} is declared by {whose}",
                    )


def _services_selecting_nothing(merged: Topology, converted: list[Converted]) -> Iterator[Problem]:
    for item in converted:
        if item.section != "services":
            continue
        service = merged.services[item.key]
        if not any(selects(service, pod) for pod in merged.pods.values()):
            yield item.document.problem(
                ("spec", "selector"),
                "selects no pod: the Service has no endpoints"
                if service.selector
                else "no selector: labkit manages no endpoints by hand, it has none",
            )
