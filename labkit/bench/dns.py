"""`labkit bench dns`: cluster DNS queries through the DNS Service, p50/p99.

From a pod, `count` A queries for a Service name go to the DNS ClusterIP
(kube-proxy DNATs each to a kube-dns pod): with both DNS pods serving, and
with one of them killed (the Service then sends every query to the other).
For comparison, the same queries sent straight to one kube-dns pod's address.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from labkit.bench.latency import measure
from labkit.bench.report import figures_table, fresh_lab, lab_name, write_json
from labkit.errors import LabkitError
from labkit.lab import Lab
from labkit.topology import load_topology
from labkit.topology.services_alloc import dns_vip

KUBE_DNS = {"k8s-app": "kube-dns"}


def measure_dns(lab: Lab, client: str, name: str, count: int) -> dict[str, dict[str, Any]]:
    """Query latency through the DNS Service (both pods, then one killed) and to a pod directly."""
    pod = lab.pod(client)
    vip = str(dns_vip(lab.topology.cluster))
    dns_pods = lab.pods(**KUBE_DNS)
    if not dns_pods:
        raise LabkitError(f"lab {lab.name} runs no cluster DNS (no services, or cluster.dns false)")
    results = {
        "service": measure(pod, "dns", vip, 53, count, name=name),
        "pod_direct": measure(pod, "dns", str(dns_pods[0].ip), 53, count, name=name),
    }
    victim = dns_pods[-1]
    victim.kill()
    try:
        results["service_one_pod_killed"] = measure(pod, "dns", vip, 53, count, name=name)
    finally:
        victim.restart()
    return results


def run(topology_ref: str, *, count: int, out: Path, console: Console) -> dict[str, Any]:
    topology = load_topology(topology_ref)
    client = next((p for p, spec in topology.pods.items() if not spec.run), None)
    service = next(iter(topology.services), None)
    if client is None or service is None:
        raise LabkitError(f"topology {topology.name} needs a pod without containers and a service")
    name = f"{service}.{topology.services[service].namespace}.svc.cluster.local"
    lab = fresh_lab(topology, lab_name(topology.name), console)
    try:
        results = {"topology": topology.name, "client": client, "name": name, "count": count}
        results["queries"] = measure_dns(lab, client, name, count)
    finally:
        lab.down()
    show(results, console)
    write_json(out, results, newline=False)
    console.print(f"written: {out}")
    return results


def show(results: dict[str, Any], console: Console) -> None:
    table = figures_table(
        f"labkit bench dns: {results['count']} A queries for {results['name']} from {results['client']}",
        ("path", "p50 ms", "p99 ms", "failed"),
        left=("path",),
    )
    for path, found in results["queries"].items():
        table.add_row(
            path.replace("_", " "), _ms(found["p50_ms"]), _ms(found["p99_ms"]), str(found["failed"])
        )
    console.print(table)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
