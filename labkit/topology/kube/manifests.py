"""Kubernetes manifests -> objects merged into a topology: read, check, convert, cross-check.

Nothing is half taken: any problem raises `TopologyError` (exit code 2) with
every problem found, each as `file:line: Kind/namespace/name: field.path: message`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, ValidationError

from labkit.errors import Problem, TopologyError
from labkit.topology.checks import check_references
from labkit.topology.kube import kinds
from labkit.topology.kube.convert_ingress import (
    IngressParts,
    convert_ingresses,
    convert_l4_configmaps,
    is_l4_configmap,
    is_tls_secret,
)
from labkit.topology.kube.convert_network import convert_namespace, convert_policy, convert_service
from labkit.topology.kube.convert_pods import convert_pod, convert_workload, serve_commands
from labkit.topology.kube.converted import Converted
from labkit.topology.kube.documents import Document, read_manifests
from labkit.topology.kube.kube_checks import kube_problems
from labkit.topology.kube.names import name_problem
from labkit.topology.kube.place import place
from labkit.topology.kube.schema import pick_version, schema_problems
from labkit.topology.model import Ingress, Namespace, NetworkPolicy, Pod, Service, Topology
from labkit.topology.services_alloc import find_port

MODELS: dict[str, type[BaseModel]] = {
    "pods": Pod,
    "services": Service,
    "policies": NetworkPolicy,
    "namespaces": Namespace,
}
SOURCE = "manifests"


@dataclass
class Manifests:
    """The topology with the manifests merged in, and what to tell the user."""

    topology: Topology
    ignored: list[str] = field(default_factory=list)  # `Kind/ns/name` of kinds not emulated
    ignored_why: dict[str, str] = field(default_factory=dict)  # `Kind/ns/name` -> the reason
    warnings: list[Problem] = field(default_factory=list)
    # What is accepted but not emulated (an exec readinessProbe...), for the user to know.
    not_emulated: list[Problem] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)  # `Kind/ns/name` of every modelled document
    kube_version: str = ""
    base: Topology | None = None  # what they were merged onto (the native topology)
    documents: list[Document] = field(default_factory=list)  # every document, ignored ones too

    def ignored_line(self) -> str:
        """One line: the ignored documents, grouped by why, in the order first seen."""
        by_reason: dict[str, list[str]] = {}
        for subject in self.ignored:
            reason = self.ignored_why.get(subject, kinds.NO_NETWORK_MEANING)
            by_reason.setdefault(reason, []).append(subject)
        return "; ".join(
            f"ignored ({reason}): {', '.join(subjects)}" for reason, subjects in by_reason.items()
        )

    def notes(self) -> list[str]:
        lines = [self.ignored_line()] if self.ignored else []
        lines += [f"note: {note}" for note in self.not_emulated]
        return lines + [f"warning: {warning}" for warning in self.warnings]


def load_manifests(
    paths: Sequence[str | Path],
    topology: Topology,
    kube_version: str | None = None,
    stdin: TextIO | None = None,
) -> Manifests:
    return merge_documents(read_manifests(paths, stdin), topology, kube_version)


def add_manifests(
    topology: Topology,
    paths: Sequence[str | Path],
    kube_version: str | None = None,
    stdin: TextIO | None = None,
) -> Manifests:
    """More manifests onto a topology that may hold some already (`manifests:` in its file)."""
    earlier: Manifests | None = topology.manifest_report
    if earlier is None:
        return load_manifests(paths, topology, kube_version, stdin)
    assert earlier.base is not None
    documents = earlier.documents + read_manifests(paths, stdin)
    return merge_documents(documents, earlier.base, kube_version or earlier.kube_version)


def merge_documents(
    documents: list[Document], topology: Topology, kube_version: str | None = None
) -> Manifests:
    version = pick_version(kube_version)
    problems: list[Problem] = []
    report = Manifests(topology, kube_version=version)
    modelled = _checked(documents, version, problems, report)
    _raise(problems)
    converted, parts, warnings = _convert(modelled, topology, problems, report.not_emulated)
    report.warnings.extend(warnings)
    _raise(problems)
    merged = _merge(topology, converted, parts, problems)
    _raise(problems)
    assert merged is not None
    problems.extend(_mapped(check_references(merged), merged, topology, converted, parts))
    found, warned = kube_problems(merged, topology, converted)
    problems.extend(found)
    report.warnings.extend(warned)
    _raise(problems)
    report.topology = merged
    report.objects = [doc.subject for doc in modelled]
    report.base, report.documents = topology, list(documents)
    merged.manifest_report = report
    merged.manifest_notes[:] = report.notes()  # for whoever prints the topology's notes
    return report


def _raise(problems: list[Problem]) -> None:
    if problems:
        raise TopologyError(problems, SOURCE)


def _checked(
    documents: list[Document], version: str, problems: list[Problem], report: Manifests
) -> list[Document]:
    """Documents of kinds labkit models, every one checked against its schema."""
    modelled = []
    seen: dict[tuple[str, str, str], Document] = {}
    for document in documents:
        if not isinstance(document.data.get("apiVersion"), str) or not isinstance(
            document.data.get("kind"), str
        ):
            problems.append(document.problem((), "apiVersion and kind are required"))
            continue
        wrong = kinds.kind_problem(document.api_version, document.kind)
        if wrong:
            problems.append(document.problem(("apiVersion",), wrong))
            continue
        found = schema_problems(document, version)
        problems.extend(found)
        if found:
            continue
        bad_name = name_problem(document.kind, document.name)
        if bad_name:
            problems.append(document.problem(("metadata", "name"), bad_name))
            continue
        key = (document.kind, document.namespace, document.name)
        if key in seen:
            problems.append(
                document.problem(("metadata", "name"), f"given already at {seen[key].where()}")
            )
            continue
        seen[key] = document
        reason = kinds.IGNORED.get((document.api_version, document.kind))
        if reason is not None and not is_l4_configmap(document) and not is_tls_secret(document):
            report.ignored.append(document.subject)
            report.ignored_why[document.subject] = reason
        else:
            modelled.append(document)
    return modelled


def _convert(
    documents: list[Document], topology: Topology, problems: list[Problem], notes: list[Problem]
) -> tuple[list[Converted], IngressParts, list[Problem]]:
    warnings: list[Problem] = []
    taken: set[str] = set()
    drafts: list[Converted] = []
    others: list[Converted] = []
    for document in documents:
        if document.kind == "Pod":
            drafts.extend(convert_pod(document, problems, taken, notes))
        elif document.kind in kinds.WORKLOADS:
            drafts.extend(convert_workload(document, problems, taken, notes))
        elif document.kind == "Service":
            others.extend(convert_service(document, problems, warnings))
        elif document.kind == "NetworkPolicy":
            others.append(convert_policy(document))
        elif document.kind == "Namespace":
            others.append(convert_namespace(document))
    parts = convert_ingresses(
        [d for d in documents if d.kind == "Ingress"],
        [d for d in documents if d.kind == "IngressClass"],
        [d for d in documents if is_tls_secret(d)],
        problems,
        notes,
    )
    convert_l4_configmaps([d for d in documents if is_l4_configmap(d)], parts)
    pods = place(drafts, topology, taken, problems)
    _mark_ingress_http(pods, others, parts)
    for pod in pods:
        pod.value["run"] = serve_commands(pod.value["ports"], pod.http_ports)
    return pods + others, parts, warnings


def _mark_ingress_http(pods: list[Converted], others: list[Converted], parts: IngressParts) -> None:
    """Ports an Ingress proxies to speak HTTP: their echo server is the HTTP one."""
    services = {c.key: c.value for c in others if c.section == "services"}
    backends = [part.value for part in parts.rules]
    if parts.default_backend:
        backends.append(parts.default_backend.value)
    for backend in backends:
        service = services.get(backend["service"])
        if service is None:
            continue
        try:
            port = find_port(Service.model_validate(service), backend["port"])
        except Exception:  # check_ingress reports it
            continue
        for pod in pods:
            value = pod.value
            if value["namespace"] != service["namespace"] or not service["selector"]:
                continue
            if any(value["labels"].get(k) != v for k, v in service["selector"].items()):
                continue
            target = port.target_port if port.target_port is not None else port.port
            pod.http_ports |= {
                p["port"] for p in value["ports"] if target in (p["port"], p.get("name"))
            }


def _merge(
    topology: Topology, converted: list[Converted], parts: IngressParts, problems: list[Problem]
) -> Topology | None:
    sections: dict[str, dict[str, Any]] = {name: dict(getattr(topology, name)) for name in MODELS}
    for item in converted:
        native = sections[item.section]
        if item.key in native:
            problems.append(
                item.document.problem(
                    ("metadata", "name"),
                    f"{item.section[:-1]} {item.key!r} is in the topology file already",
                )
            )
            continue
        try:
            native[item.key] = MODELS[item.section].model_validate(item.value)
        except ValidationError as exc:
            for err in exc.errors():
                path = item.trace(tuple(err["loc"]))
                problems.append(item.document.problem(path, str(err["msg"])))
    ingress = _merged_ingress(topology, parts, problems)
    if problems:
        return None
    fields = {name: getattr(topology, name) for name in Topology.model_fields}
    return Topology.model_validate({**fields, **sections, "ingress": ingress})


def _merged_ingress(
    topology: Topology, parts: IngressParts, problems: list[Problem]
) -> Ingress | None:
    native = topology.ingress
    if (
        not parts.rules
        and parts.default_backend is None
        and not parts.controllers
        and not parts.l4
        and not parts.tls
    ):
        return native
    first = (
        (parts.rules[0].document if parts.rules else None)
        or next(iter(parts.controllers.values()), None)
        or (parts.default_backend.document if parts.default_backend else None)
        or next(iter(parts.l4_documents), None)
        or (parts.tls[0].document if parts.tls else None)
    )
    assert first is not None
    wanted = set(parts.controllers)
    if native is not None and "controller" in native.model_fields_set:
        wanted.add(native.controller)
    if len(wanted) > 1:
        problems.append(
            first.problem(
                ("spec", "ingressClassName"),
                f"labkit runs one ingress controller; these ask for {', '.join(sorted(wanted))}",
            )
        )
        return native
    controller = next(iter(wanted), native.controller if native else "nginx")
    if native is not None:
        nodes = native.nodes
    else:
        nodes = [n for n in topology.member_nodes() if "edge" in topology.nodes[n].roles]
    if not nodes:
        problems.append(
            first.problem(
                (),
                "an Ingress needs edge nodes: give cluster nodes the role `edge`, or set "
                "`ingress.nodes` in the topology",
            )
        )
        return None
    base = (
        native.model_dump(exclude={"rules", "default_backend", "controller", "nodes", "tls"})
        if native
        else {}
    )
    rules = [rule.model_dump() for rule in native.rules] if native else []
    rules += [part.value for part in parts.rules]
    tls = [entry.model_dump() for entry in native.tls] if native else []
    tls += [part.value for part in parts.tls]
    default = native.default_backend.model_dump() if native and native.default_backend else None
    if parts.default_backend is not None:
        default = parts.default_backend.value
    try:
        return Ingress.model_validate(
            {
                **base,
                "controller": controller,
                "nodes": nodes,
                "rules": rules,
                "default_backend": default,
                "tls": tls,
                **{k: {**base.get(k, {}), **parts.l4.get(k, {})} for k in ("tcp", "udp")},
            }
        )
    except ValidationError as exc:
        native_tls = len(tls) - len(parts.tls)
        for err in exc.errors():
            loc, message = tuple(err["loc"]), str(err["msg"]).removeprefix("Value error, ")
            if loc[:1] == ("tls",) and len(loc) > 1 and int(loc[1]) >= native_tls:
                part = parts.tls[int(loc[1]) - native_tls]
                problems.append(part.document.problem((*part.path, *loc[2:]), message))
            else:
                problems.append(first.problem((), message))
        return None


def _mapped(
    found: list[Problem],
    merged: Topology,
    topology: Topology,
    converted: list[Converted],
    parts: IngressParts,
) -> list[Problem]:
    """The model checks' problems, pointed at the manifest each came from."""
    by_key = {(c.section, c.key): c for c in converted}
    native_rules = len(topology.ingress.rules) if topology.ingress else 0
    native_tls = len(topology.ingress.tls) if topology.ingress else 0
    result = []
    for problem in found:
        path = problem.path
        item = by_key.get((str(path[0]), str(path[1]))) if len(path) > 1 else None
        if item is not None:
            result.append(item.document.problem(item.trace(path[2:]), problem.message))
        elif path[:2] == ("ingress", "rules") and len(path) > 2 and int(path[2]) >= native_rules:
            part = parts.rules[int(path[2]) - native_rules]
            result.append(
                part.document.problem((*part.path, *_ingress_tail(path[3:])), problem.message)
            )
        elif path[:2] == ("ingress", "tls") and len(path) > 2 and int(path[2]) >= native_tls:
            part = parts.tls[int(path[2]) - native_tls]
            result.append(part.document.problem((*part.path, *path[3:]), problem.message))
        elif path[:2] == ("ingress", "default_backend") and parts.default_backend:
            part = parts.default_backend
            result.append(
                part.document.problem((*part.path, *_ingress_tail(path[2:])), problem.message)
            )
        else:
            result.append(problem)
    return result


def _ingress_tail(path: tuple[str | int, ...]) -> tuple[str | int, ...]:
    names: dict[str | int, tuple[str | int, ...]] = {
        "service": ("backend", "service", "name"),
        "port": ("backend", "service", "port"),
        "path_type": ("pathType",),
    }
    return names.get(path[0], path[:1]) if path else ()
