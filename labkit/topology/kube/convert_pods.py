"""Pods and workloads (Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet) -> pod drafts.

Images are not run: every declared containerPort is served by the echo
server, so reachability and "who answered" work for any manifest. Placement
is left to `labkit.topology.kube.place`.
"""

from __future__ import annotations

from typing import Any

from labkit.errors import Problem
from labkit.topology.kube.converted import Converted, camel
from labkit.topology.kube.documents import Document, Path_
from labkit.topology.kube.podnames import generated_name, template_hash
from labkit.topology.model import object_key

HTTP_APP_PROTOCOLS = {"http", "https", "h2c", "kubernetes.io/h2c", "kubernetes.io/ws"}
TEMPLATE = ("spec", "template")
# Readiness probes labkit cannot run, and why.
UNRUN_PROBES = {
    "exec": "the container images are not run",
    "grpc": "labkit runs tcpSocket and httpGet probes only",
}


def convert_pod(
    document: Document, problems: list[Problem], taken: set[str], notes: list[Problem]
) -> list[Converted]:
    meta = document.metadata
    name = document.name
    if not name and meta.get("generateName"):
        name = generated_name(str(meta["generateName"]), document.subject, 0, taken)
    taken.add(name)
    draft = _pod(document, (), name, document.data, problems, notes)
    return [draft] if draft else []


def convert_workload(
    document: Document, problems: list[Problem], taken: set[str], notes: list[Problem]
) -> list[Converted]:
    spec = document.data.get("spec") or {}
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    selector = spec.get("selector") or {}
    if not _selector_holds(selector, labels):
        problems.append(
            document.problem(("spec", "selector"), "selector does not match template labels")
        )
        return []
    kind, owner = document.kind, document.name
    if kind == "DaemonSet":  # one per node, named when placed
        draft = _pod(document, TEMPLATE, owner, template, problems, notes)
        if draft:
            draft.every_node = True
        return [draft] if draft else []
    replicas = spec.get("replicas")
    count = 1 if replicas is None else int(replicas)
    drafts = []
    for index in range(count):
        if kind == "StatefulSet":
            name = f"{owner}-{index}"
        elif kind == "Deployment":
            base = f"{owner}-{template_hash(template)}-"
            name = generated_name(base, f"{document.namespace}/{owner}", index, taken)
        else:  # ReplicaSet
            name = generated_name(f"{owner}-", f"{document.namespace}/{owner}", index, taken)
        taken.add(name)
        draft = _pod(document, TEMPLATE, name, template, problems, notes if index == 0 else [])
        if draft:
            drafts.append(draft)
    return drafts


def _selector_holds(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    from labkit.topology.model import LabelSelector
    from labkit.topology.selectors import selector_matches

    try:
        model = LabelSelector.model_validate(
            {
                "match_labels": selector.get("matchLabels") or {},
                "match_expressions": selector.get("matchExpressions") or [],
            }
        )
    except ValueError:
        return False
    return selector_matches(model, labels)


def _pod(
    document: Document,
    prefix: Path_,
    name: str,
    template: dict[str, Any],
    problems: list[Problem],
    notes: list[Problem],
) -> Converted | None:
    """One pod of `template` (a Pod, or a workload's pod template at `prefix`); what it
    cannot model faithfully goes to `notes`."""
    spec: dict[str, Any] = template.get("spec") or {}
    meta: dict[str, Any] = template.get("metadata") or {}
    spec_path: Path_ = (*prefix, "spec")
    namespace = document.namespace
    ports: list[dict[str, Any]] = []
    port_paths: list[Path_] = []
    http: set[int] = set()
    for c, container in enumerate(spec.get("containers") or []):
        for p, declared in enumerate(container.get("ports") or []):
            path = (*spec_path, "containers", c, "ports", p)
            protocol = declared.get("protocol") or "TCP"
            if protocol not in ("TCP", "UDP"):
                problems.append(
                    document.problem(
                        (*path, "protocol"), f"labkit serves TCP and UDP, not {protocol}"
                    )
                )
                continue
            number = declared["containerPort"]
            port: dict[str, Any] = {"port": number, "protocol": protocol}
            if declared.get("name"):
                port["name"] = declared["name"]
            if declared.get("hostPort"):
                port["host_port"] = declared["hostPort"]
            if protocol == "TCP" and _speaks_http(declared):
                http.add(number)
            ports.append(port)
            port_paths.append(path)
    value: dict[str, Any] = {
        "namespace": namespace,
        "labels": dict(meta.get("labels") or {}),
        "ports": ports,
        "host_network": bool(spec.get("hostNetwork")),
        "origin": {
            "kind": "Pod",
            "name": name,
            "namespace": namespace,
            "source": document.where(),
            "owner": None if document.kind == "Pod" else f"{document.kind}/{document.name}",
        },
    }
    value["readiness"] = _readiness(document, spec, spec_path, notes)
    for probe in value["readiness"]:
        if probe["kind"] == "http" and isinstance(probe["port"], int):
            http.add(probe["port"])
        elif probe["kind"] == "http":
            http |= {p["port"] for p in ports if p.get("name") == probe["port"]}

    def trace(path: Path_) -> Path_:
        if path[:1] == ("ports",) and len(path) > 1 and isinstance(path[1], int):
            return (*port_paths[path[1]], *(camel(part) for part in path[2:]))
        if path[:1] == ("node",):
            return (*spec_path, "nodeName" if spec.get("nodeName") else "nodeSelector")
        return (*prefix, "metadata") if path[:1] in (("labels",), ("namespace",)) else spec_path

    return Converted(
        "pods",
        object_key(namespace, name),
        value,
        document,
        trace,
        node_name=spec.get("nodeName"),
        node_selector=dict(spec.get("nodeSelector") or {}),
        http_ports=http,
    )


def _speaks_http(port: dict[str, Any]) -> bool:
    name = str(port.get("name") or "")
    return "http" in name or str(port.get("appProtocol") or "").lower() in HTTP_APP_PROTOCOLS


def _readiness(
    document: Document, spec: dict[str, Any], spec_path: Path_, notes: list[Problem]
) -> list[dict[str, Any]]:
    """Every container's readinessProbe with tcpSocket or httpGet, in the model's terms.

    The pod is ready when all pass, as for the kubelet. An exec or grpc probe
    cannot be run honestly (the images are not run): its container counts as
    having no probe, and the user is told in a note.
    """
    probes = []
    for c, container in enumerate(spec.get("containers") or []):
        probe = container.get("readinessProbe")
        if not probe:
            continue
        timing = {
            "initial_delay": probe.get("initialDelaySeconds") or 0,
            "period": probe.get("periodSeconds") or 10,
            "timeout": probe.get("timeoutSeconds") or 1,
            "failure_threshold": probe.get("failureThreshold") or 3,
            "success_threshold": probe.get("successThreshold") or 1,
        }
        if "tcpSocket" in probe:
            probes.append({"kind": "tcp", "port": probe["tcpSocket"]["port"], **timing})
        elif "httpGet" in probe:
            get = probe["httpGet"]
            path = get.get("path") or "/"
            probes.append({"kind": "http", "port": get["port"], "path": path, **timing})
        else:
            handler = next((h for h in UNRUN_PROBES if h in probe), "a handler labkit lacks")
            notes.append(
                document.problem(
                    (*spec_path, "containers", c, "readinessProbe"),
                    f"{handler} probe not run ({UNRUN_PROBES.get(handler, 'unknown')}): "
                    f"container {container.get('name')!r} counts as ready",
                )
            )
    return probes


def serve_commands(ports: list[dict[str, Any]], http_ports: set[int]) -> list[str]:
    """Echo servers for every declared port: HTTP or raw TCP, and UDP, one per number."""
    numbers = sorted({port["port"] for port in ports})
    commands = []
    for number in numbers:
        protocols = {port["protocol"] for port in ports if port["port"] == number}
        tcp = "TCP" in protocols
        http_port = number if tcp and number in http_ports else 0
        tcp_port = number if tcp and not http_port else 0
        udp_port = number if "UDP" in protocols else 0
        commands.append(
            f"echo-server --http-port {http_port} --tcp-port {tcp_port} --udp-port {udp_port}"
        )
    return commands
