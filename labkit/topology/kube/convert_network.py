"""Namespace, Service and NetworkPolicy manifests -> labkit's model fields."""

from __future__ import annotations

import re
from typing import Any

from labkit.errors import Problem
from labkit.topology.kube.converted import Converted, under
from labkit.topology.kube.documents import Document, Path_
from labkit.topology.model import object_key


def origin(document: Document) -> dict[str, Any]:
    return {
        "kind": document.kind,
        "name": document.name,
        "namespace": document.namespace,
        "source": document.where(),
    }


def convert_namespace(document: Document) -> Converted:
    labels = dict(document.metadata.get("labels") or {})
    return Converted(
        "namespaces", document.name, {"labels": labels}, document, under(("metadata",))
    )


def convert_service(
    document: Document, problems: list[Problem], warnings: list[Problem]
) -> list[Converted]:
    spec: dict[str, Any] = document.data.get("spec") or {}
    kind = spec.get("type") or "ClusterIP"
    if kind == "ExternalName":
        warnings.append(document.problem(("spec", "type"), "ExternalName: no proxying, ignored"))
        return []
    if spec.get("clusterIP") == "None":
        warnings.append(
            document.problem(("spec", "clusterIP"), "headless Service: not modelled, ignored")
        )
        return []
    if kind == "LoadBalancer":
        warnings.append(
            document.problem(("spec", "type"), "the lab has no load balancer; served as NodePort")
        )
        kind = "NodePort"
    ports = []
    for index, port in enumerate(spec.get("ports") or []):
        model: dict[str, Any] = {"port": port["port"], "protocol": port.get("protocol") or "TCP"}
        if model["protocol"] not in ("TCP", "UDP"):
            problems.append(
                document.problem(
                    ("spec", "ports", index, "protocol"),
                    f"labkit proxies TCP and UDP, not {model['protocol']}",
                )
            )
            continue
        for source, target in (
            ("name", "name"),
            ("targetPort", "target_port"),
            ("nodePort", "node_port"),
        ):
            if port.get(source) is not None:
                model[target] = port[source]
        ports.append(model)
    value: dict[str, Any] = {
        "namespace": document.namespace,
        "selector": dict(spec.get("selector") or {}),
        "ports": ports,
        "type": kind,
        "session_affinity": spec.get("sessionAffinity") or "None",
        "origin": origin(document),
    }
    timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get(
        "timeoutSeconds"
    )
    if timeout is not None:
        value["affinity_timeout"] = timeout
    if spec.get("clusterIP"):
        value["vip"] = spec["clusterIP"]

    def trace(path: Path_) -> Path_:
        renamed = {
            "vip": ("clusterIP",),
            "affinity_timeout": ("sessionAffinityConfig", "clientIP", "timeoutSeconds"),
        }
        if path and path[0] in renamed:
            return ("spec", *renamed[str(path[0])])
        if path[:1] == ("namespace",):
            return ("metadata", "namespace")
        return under(("spec",))(path)

    return [
        Converted("services", object_key(document.namespace, document.name), value, document, trace)
    ]


def snake_keys(value: Any) -> Any:
    """A manifest's camelCase mapping keys in the model's snake_case (`ipBlock` -> `ip_block`)."""
    if isinstance(value, dict):
        return {
            re.sub(r"([A-Z])", r"_\1", key).lower(): snake_keys(item) for key, item in value.items()
        }
    if isinstance(value, list):
        return [snake_keys(item) for item in value]
    return value


def convert_policy(document: Document) -> Converted:
    spec = snake_keys(document.data.get("spec") or {})
    value = {"namespace": document.namespace, **spec, "origin": origin(document)}
    return Converted(
        "policies", object_key(document.namespace, document.name), value, document, under(("spec",))
    )
