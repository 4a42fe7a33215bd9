"""Ingress and IngressClass manifests -> rules of labkit's one ingress.

labkit runs one ingress controller (nginx or haproxy) on the topology's edge
nodes; every Ingress adds its rules to it. The IngressClass an Ingress names
(or the default class) says which controller; two different ones are refused.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from labkit.errors import Problem
from labkit.topology.kube.documents import Document, Path_
from labkit.topology.model import object_key

DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"


@dataclass
class IngressPart:
    """One rule (or the default backend) and the place in the file it came from."""

    value: dict[str, Any]
    document: Document
    path: Path_


# ingress-nginx's ConfigMaps of L4 entries (its --tcp-services/--udp-services-configmap).
L4_CONFIGMAPS = {"tcp-services": "tcp", "udp-services": "udp"}


@dataclass
class IngressParts:
    rules: list[IngressPart] = field(default_factory=list)
    default_backend: IngressPart | None = None
    controllers: dict[str, Document] = field(default_factory=dict)  # controller -> who asked
    l4: dict[str, dict[str, str]] = field(default_factory=dict)  # tcp|udp -> port -> target
    l4_documents: list[Document] = field(default_factory=list)
    tls: list[IngressPart] = field(default_factory=list)  # spec.tls entries, certificates in


TLS_SECRET_TYPE = "kubernetes.io/tls"


def is_tls_secret(document: Document) -> bool:
    """A kubernetes.io/tls Secret: an Ingress's certificate, so not an ignored document."""
    return document.kind == "Secret" and document.data.get("type") == TLS_SECRET_TYPE


def tls_pair(document: Document, problems: list[Problem]) -> tuple[str, str] | None:
    """The PEM certificate and key of a kubernetes.io/tls Secret (`data` is base64,
    `stringData` plain text and wins, as the API server merges them)."""
    found: dict[str, str] = {}
    for name in ("tls.crt", "tls.key"):
        plain = (document.data.get("stringData") or {}).get(name)
        encoded = (document.data.get("data") or {}).get(name)
        if plain is not None:
            found[name] = str(plain)
        elif encoded is not None:
            try:
                found[name] = base64.b64decode(str(encoded), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                problems.append(document.problem(("data", name), "not base64 of PEM text"))
                return None
        else:
            problems.append(document.problem(("data",), f"a {TLS_SECRET_TYPE} Secret needs {name}"))
            return None
    return found["tls.crt"], found["tls.key"]


def is_l4_configmap(document: Document) -> bool:
    return document.kind == "ConfigMap" and document.name in L4_CONFIGMAPS


def convert_l4_configmaps(documents: list[Document], parts: IngressParts) -> None:
    """`data: {"9000": "default/echo:9000"}` -> ingress.tcp/udp (a `:PROXY` suffix is dropped)."""
    for document in documents:
        field_name = L4_CONFIGMAPS[document.name]
        data = document.data.get("data") or {}
        table = parts.l4.setdefault(field_name, {})
        for port, target in data.items():
            service, _, port_ref = str(target).partition(":")
            table[str(port)] = f"{service}:{port_ref.split(':')[0]}"
        parts.l4_documents.append(document)


def controller_of(document: Document, problems: list[Problem]) -> str | None:
    """nginx or haproxy, from an IngressClass's spec.controller."""
    controller = str((document.data.get("spec") or {}).get("controller") or "")
    if "haproxy" in controller:
        return "haproxy"
    if "nginx" in controller:
        return "nginx"
    problems.append(
        document.problem(
            ("spec", "controller"), f"controller {controller!r}: labkit runs nginx or haproxy"
        )
    )
    return None


def convert_ingresses(
    ingresses: list[Document],
    classes: list[Document],
    secrets: list[Document],
    problems: list[Problem],
    notes: list[Problem],
) -> IngressParts:
    """The rules and TLS hosts of every Ingress, with the certificates of `secrets`."""
    by_name = {doc.name: (doc, controller_of(doc, problems)) for doc in classes}
    defaults = [
        name
        for name, (doc, _) in by_name.items()
        if str(doc.metadata.get("annotations", {}).get(DEFAULT_CLASS_ANNOTATION)) == "true"
    ]
    parts = IngressParts()
    for document in ingresses:
        spec: dict[str, Any] = document.data.get("spec") or {}
        annotations = document.metadata.get("annotations") or {}
        class_name = spec.get("ingressClassName") or annotations.get(LEGACY_CLASS_ANNOTATION)
        if class_name in by_name:
            controller = by_name[class_name][1]
        elif class_name in ("nginx", "haproxy"):
            controller = class_name
        elif class_name:
            problems.append(
                document.problem(
                    ("spec", "ingressClassName"),
                    f"no IngressClass {class_name!r} (known: {', '.join(sorted(by_name)) or 'none'})",
                )
            )
            continue
        else:
            controller = by_name[defaults[0]][1] if defaults else None
        if controller:
            parts.controllers.setdefault(controller, document)
        for t, entry in enumerate(spec.get("tls") or []):
            part = _tls(document, ("spec", "tls", t), entry, secrets, problems, notes)
            parts.tls.append(part)
        if spec.get("defaultBackend"):
            backend = _backend(
                document, ("spec", "defaultBackend"), spec["defaultBackend"], problems
            )
            if backend and parts.default_backend is not None:
                problems.append(
                    document.problem(
                        ("spec", "defaultBackend"),
                        "a default backend is set already by "
                        f"{parts.default_backend.document.subject}",
                    )
                )
            elif backend:
                parts.default_backend = IngressPart(backend, document, ("spec", "defaultBackend"))
        for r, rule in enumerate(spec.get("rules") or []):
            paths = (rule.get("http") or {}).get("paths") or []
            for p, entry in enumerate(paths):
                where = ("spec", "rules", r, "http", "paths", p)
                backend = _backend(
                    document, (*where, "backend"), entry.get("backend") or {}, problems
                )
                if backend is None:
                    continue
                kind = entry.get("pathType")
                value = {
                    "path": entry.get("path") or "/",
                    # ImplementationSpecific: both controllers treat it as a prefix.
                    "path_type": "Exact" if kind == "Exact" else "Prefix",
                    **backend,
                }
                if rule.get("host"):
                    value["host"] = rule["host"]
                parts.rules.append(IngressPart(value, document, where))
    return parts


def _tls(
    document: Document,
    path: Path_,
    entry: dict[str, Any],
    secrets: list[Document],
    problems: list[Problem],
    notes: list[Problem],
) -> IngressPart:
    """One `spec.tls` entry, with its Secret's certificate; a Secret not given gets the
    lab's self-signed certificate, as ingress-nginx serves its default one then."""
    value: dict[str, Any] = {"hosts": [str(host) for host in entry.get("hosts") or []]}
    name = entry.get("secretName")
    if name:
        key = object_key(document.namespace, str(name))
        value["secret"] = key
        secret = next(
            (s for s in secrets if (s.namespace, s.name) == (document.namespace, name)), None
        )
        pair = tls_pair(secret, problems) if secret is not None else None
        if pair is not None:
            value["certificate"], value["key"] = pair
        elif secret is None:
            notes.append(
                document.problem(
                    (*path, "secretName"),
                    f"no {TLS_SECRET_TYPE} Secret {key!r} among the manifests: served with the "
                    "lab's self-signed certificate",
                )
            )
    return IngressPart(value, document, path)


def _backend(
    document: Document, path: Path_, backend: dict[str, Any], problems: list[Problem]
) -> dict[str, Any] | None:
    service = backend.get("service")
    if not service:
        problems.append(document.problem(path, "labkit routes to Services only (not resource)"))
        return None
    port = service.get("port") or {}
    number = port.get("number")
    return {
        "service": object_key(document.namespace, service["name"]),
        "port": number if number is not None else port.get("name"),
    }
