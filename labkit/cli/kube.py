"""`labkit apply -f`, `delete -f`, `get`: a running lab in Kubernetes terms."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from labkit.cli.common import app, attach_lab, console, friendly, print_notes
from labkit.errors import UsageError

Files = Annotated[
    list[str], typer.Option("-f", "--filename", help="File, directory or - (repeatable)")
]
Lab = Annotated[str | None, typer.Option("--lab", help="Lab name (default: the only one up)")]
KINDS = {  # what `get` takes (kubectl's names and short names) -> the kind shown
    "pods": "pods", "pod": "pods", "po": "pods",
    "services": "services", "service": "services", "svc": "services",
    "endpoints": "endpoints", "ep": "endpoints",
    "networkpolicies": "networkpolicies", "networkpolicy": "networkpolicies", "netpol": "networkpolicies",
    "ingresses": "ingresses", "ingress": "ingresses", "ing": "ingresses",
}  # fmt: skip


def _change(verb: str, files: list[str], lab_name: str | None) -> None:
    lab = attach_lab(lab_name)
    result = getattr(lab, verb)(files, stdin=sys.stdin)
    for line in result.lines:
        console().print(line, highlight=False)
    print_notes(result.notes)
    console().print(f"[dim]{result.seconds * 1000:.0f} ms[/dim]")


@app.command()
@friendly
def apply(files: Files, lab_name: Lab = None) -> None:
    """Create or update what the manifests describe (kubectl apply); bad input changes nothing."""
    _change("apply", files, lab_name)


@app.command()
@friendly
def delete(files: Files, lab_name: Lab = None) -> None:
    """Delete what the manifests name (kubectl delete -f)."""
    _change("delete", files, lab_name)


@app.command()
@friendly
def get(
    kind: Annotated[str, typer.Argument(help="pods|services|endpoints|networkpolicies|ingresses")],
    namespace: Annotated[
        str | None, typer.Option("-n", "--namespace", help="Only this namespace")
    ] = None,
    output: Annotated[str | None, typer.Option("-o", "--output", help="wide|yaml|json")] = None,
    lab_name: Lab = None,
) -> None:
    """What the lab holds, in Kubernetes terms (pod IPs and nodes, endpoints, VIPs)."""
    if kind not in KINDS:
        raise UsageError(f"labkit get knows {', '.join(sorted(set(KINDS.values())))}, not {kind!r}")
    if output not in (None, "wide", "yaml", "json"):
        raise UsageError(f"-o takes wide, yaml or json, not {output!r}")
    lab = attach_lab(lab_name)
    rows = [row for row in ROWS[KINDS[kind]](lab) if namespace in (None, row["namespace"])]
    if output == "json":
        print(json.dumps({"kind": "List", "items": rows}, indent=2))
    elif output == "yaml":
        import yaml

        print(yaml.safe_dump({"kind": "List", "items": rows}, sort_keys=False), end="")
    else:
        _table(rows, wide=output == "wide", all_namespaces=namespace is None)


def _table(rows: list[dict[str, Any]], *, wide: bool, all_namespaces: bool) -> None:
    from rich.table import Table

    if not rows:
        console().print("No resources found.")
        return
    table = Table(box=None, pad_edge=False)
    columns = [
        c
        for c in rows[0]
        if c not in ("namespace", "wide") or (c == "namespace" and all_namespaces)
    ]
    extra = list(rows[0].get("wide", {})) if wide else []
    for column in columns + extra:
        table.add_column(column.upper())
    for row in rows:
        table.add_row(*(str(row[c]) for c in columns), *(str(row["wide"][c]) for c in extra))
    console().print(table)


def _pods(lab: Any) -> list[dict[str, Any]]:
    from labkit.layers.readiness import probe_ready
    from labkit.topology.model import key_name

    ready = probe_ready(lab.cluster)  # one exec per node, as the Services see it
    rows = []
    for pod in lab.pods():
        spec = pod.spec
        rows.append(
            {
                "namespace": pod.namespace,
                "name": key_name(pod.name),
                "ready": str(pod.name in ready).lower(),
                "ip": str(pod.ip),
                "node": pod.node.name,
                "wide": {
                    "host-network": spec.host_network,
                    "labels": ",".join(f"{k}={v}" for k, v in spec.labels.items()) or "<none>",
                    "owner": spec.origin.owner if spec.origin and spec.origin.owner else "<none>",
                },
            }
        )
    return rows


def _services(lab: Any) -> list[dict[str, Any]]:
    from labkit.topology.model import key_name

    rows = []
    for handle in lab.services.all():
        spec = handle.spec
        ports = ",".join(
            f"{p.port}{':' + str(handle.node_port(p.port)) if spec.type == 'NodePort' else ''}/{p.protocol}"
            for p in spec.ports
        )
        rows.append(
            {
                "namespace": spec.namespace,
                "name": key_name(handle.name),
                "type": spec.type,
                "cluster-ip": str(handle.vip),
                "ports": ports,
                "wide": {
                    "selector": ",".join(f"{k}={v}" for k, v in spec.selector.items()) or "<none>"
                },
            }
        )
    return rows


def _endpoints(lab: Any) -> list[dict[str, Any]]:
    from labkit.topology.model import key_name

    rows = []
    for handle in lab.services.all():
        found = handle.endpoints()
        addresses = sorted({f"{e.ip}:{port}" for e in found for port in e.ports.values()})
        rows.append(
            {
                "namespace": handle.namespace,
                "name": key_name(handle.name),
                "endpoints": ",".join(addresses) or "<none>",
                "wide": {"pods": ",".join(key_name(e.pod) for e in found) or "<none>"},
            }
        )
    return rows


def _policies(lab: Any) -> list[dict[str, Any]]:
    from labkit.topology.model import key_name

    rows = []
    for key, policy in lab.topology.policies.items():
        selector = policy.pod_selector.match_labels
        rows.append(
            {
                "namespace": policy.namespace,
                "name": key_name(key),
                "pod-selector": ",".join(f"{k}={v}" for k, v in selector.items()) or "<none>",
                "wide": {"types": ",".join(sorted(policy.types()))},
            }
        )
    return rows


def _ingresses(lab: Any) -> list[dict[str, Any]]:
    from labkit.topology.model import key_name

    ingress = lab.topology.ingress
    if ingress is None:
        return []
    addresses = ",".join(str(lab.node(node).ip) for node in ingress.nodes)
    return [
        {
            "namespace": lab.topology.services[rule.service].namespace
            if rule.service in lab.topology.services
            else "default",
            "name": f"{rule.host or '*'}{rule.path}",
            "class": ingress.controller,
            "hosts": rule.host or "*",
            "address": addresses,
            # Every host is served on the HTTPS port too once there is TLS (as kubectl: 80, 443).
            "ports": f"{ingress.port}, {ingress.tls_port}" if ingress.tls else str(ingress.port),
            "wide": {"backend": f"{key_name(rule.service)}:{rule.port}"},
        }
        for rule in ingress.rules
    ]


ROWS = {
    "pods": _pods,
    "services": _services,
    "endpoints": _endpoints,
    "networkpolicies": _policies,
    "ingresses": _ingresses,
}
