"""`labkit bench manifests`: what reading Kubernetes manifests costs, and how fast a
changed NetworkPolicy reaches every node of a lab.

- load: 1,000 documents (Deployments, Services, NetworkPolicies, ConfigMaps)
  read, checked against the Kubernetes schemas, converted and cross-checked,
  against plain `yaml.safe_load_all` of the same text in the same run (the
  ratio is what carries from one host to another). Median of `repeats`.
- apply: on a 3-node lab, `lab.apply` of one changed policy, until every
  node has loaded it (apply returns once each node's iptables-restore did),
  checked on each node afterwards. Median of `repeats`.
"""

from __future__ import annotations

import io
import statistics
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from labkit.bench.report import document, figures_table, fresh_lab, lab_name, write_json
from labkit.topology import parse_topology
from labkit.topology.kube import load_manifests
from labkit.topology.kube.manifests import add_manifests

INFRA = "name: bench-manifests\nnodes:\n  node-1: {}\n  node-2: {}\n  node-3: {}\n"
APP = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: web, ports: [{name: http, containerPort: 8080}]}]
"""


def sample_documents(count: int = 1000) -> str:
    """`count` documents, a quarter each of Deployment, Service, NetworkPolicy, ConfigMap."""
    parts = []
    for i in range(count // 4):
        ns = f"ns-{i % 10}"
        parts.append(
            f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: web-{i}, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web-{i}}}}}
  template:
    metadata: {{labels: {{app: web-{i}}}}}
    spec:
      containers: [{{name: web, image: nginx, ports: [{{name: http, containerPort: 8080}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-{i}, namespace: {ns}}}
spec: {{selector: {{app: web-{i}}}, ports: [{{name: http, port: 80, targetPort: http}}]}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: web-{i}, namespace: {ns}}}
spec:
  podSelector: {{matchLabels: {{app: web-{i}}}}}
  ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{team: a}}}}}}], ports: [{{port: http}}]}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: c-{i}, namespace: {ns}}}
data: {{a: b}}"""
        )
    return "\n---\n".join(parts)


def policy(port: int) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"ports": [{"port": port}]}],
        },
    }


def measure_load(count: int, repeats: int) -> dict[str, Any]:
    text = sample_documents(count)
    topology = parse_topology(INFRA)
    started = time.perf_counter()
    load_manifests(["-"], topology, stdin=io.StringIO(text))  # schema validators ready
    first = time.perf_counter() - started
    plain, ours = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        list(yaml.safe_load_all(text))
        plain.append(time.perf_counter() - started)
        started = time.perf_counter()
        report = load_manifests(["-"], topology, stdin=io.StringIO(text))
        ours.append(time.perf_counter() - started)
    return {
        "documents": count,
        "pods": len(report.topology.pods),
        "first_load_s": first,
        "load_s": statistics.median(ours),
        "safe_load_all_s": statistics.median(plain),
        "ratio": statistics.median(ours) / statistics.median(plain),
    }


def measure_apply(repeats: int, console: Console) -> dict[str, Any]:
    topology = add_manifests(parse_topology(INFRA), ["-"], stdin=io.StringIO(APP)).topology
    lab = fresh_lab(topology, lab_name("manifests"), console)
    try:
        lab.apply([policy(8080)])
        seconds = []
        for round_ in range(repeats):
            port = 8081 + round_ % 2  # each apply changes the policy
            result = lab.apply([policy(port)])
            seconds.append(result.seconds)
            for node in lab.nodes():  # every node has it (checked outside the timing)
                rules = node.exec("iptables -S | grep -c -- '--dport' || true").stdout
                assert int(rules.strip() or 0) >= 1, f"{node.name} lacks the policy"
        return {"nodes": len(lab.nodes()), "apply_policy_s": statistics.median(seconds),
                "apply_policy_rounds_s": seconds}  # fmt: skip
    finally:
        lab.down()


def run(*, count: int, repeats: int, with_lab: bool, out: Path, console: Console) -> dict[str, Any]:
    figures = measure_load(count, repeats)
    if with_lab:
        figures |= measure_apply(repeats, console)
    rows = [
        ("load+validate", f"{figures['load_s'] * 1000:.0f} ms for {count} documents (goal <= 1 s)"),
        ("yaml.safe_load_all", f"{figures['safe_load_all_s'] * 1000:.0f} ms, same text"),
        ("ratio", f"{figures['ratio']:.2f} x plain YAML"),
        (
            "first load",
            f"{figures['first_load_s'] * 1000:.0f} ms (schema validators from cache or built)",
        ),
    ]
    if with_lab:
        rows.append(("apply 1 policy", f"{figures['apply_policy_s'] * 1000:.0f} ms to all "
                     f"{figures['nodes']} nodes (goal <= 300 ms)"))  # fmt: skip
    table = figures_table("manifests", ["figure", "value"], left={"figure", "value"})
    for row in rows:
        table.add_row(*row)
    console.print(table)
    write_json(out, document("manifests", **figures))
    return figures
