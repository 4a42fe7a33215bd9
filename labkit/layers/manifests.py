"""`apply` and `delete` of Kubernetes manifests on a running lab (`lab.apply`, `lab.delete`).

The lab's state keeps the native topology from before any manifest and every
document applied so far. A change is decided on paper first (topology.kube):
read and check the files, merge the documents that result onto the native
part, diff against the lab. Any problem raises before anything changes. Then
pods go and come (one `pods_changed` for all: Services, DNS, ingress and
policy follow), Services are replaced, policies and the ingress re-applied.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from labkit.core import pods as lifecycle
from labkit.core.cluster import Cluster
from labkit.layers import ingress as ingress_layer
from labkit.layers import policy as policy_layer
from labkit.layers import services_api
from labkit.layers.service_state import layer_state
from labkit.topology.model import Topology

if TYPE_CHECKING:  # the manifests' code (schemas, converters) loads with the first manifest
    from labkit.topology.kube import apply_plan
    from labkit.topology.kube.documents import Document
    from labkit.topology.kube.manifests import Manifests

STATE_KEY = "manifests"
Given = str | Path | dict[str, Any] | Sequence[str | Path | dict[str, Any]]


@dataclass
class ApplyResult:
    """What `apply`/`delete` did: kubectl's lines, the plan, what to tell, how long it took."""

    lines: list[str]
    plan: apply_plan.ApplyPlan
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def remember(cluster: Cluster) -> None:
    """At `up`: keep the native topology and the documents merged into it, if any."""
    report: Manifests | None = cluster.topology.manifest_report
    state = cluster.slice(STATE_KEY)
    if report is None or report.base is None:
        state.setdefault("base", cluster.topology.model_dump(mode="json", exclude_none=True))
        return
    from labkit.topology.kube import apply_plan

    state["base"] = report.base.model_dump(mode="json", exclude_none=True)
    state["documents"] = [apply_plan.stored(document) for document in report.documents]
    state["kube_version"] = report.kube_version


def documents_of(given: Given, stdin: TextIO | None = None) -> list[Document]:
    """Files, directories, `-`, or objects (dicts as Kubernetes writes them)."""
    from labkit.topology.kube.documents import Document, read_manifests

    items = [given] if isinstance(given, str | Path | dict) else list(given)
    documents: list[Document] = []
    paths = [item for item in items if not isinstance(item, dict)]
    if paths:
        documents += read_manifests(paths, stdin)
    for at, item in enumerate(i for i in items if isinstance(i, dict)):
        documents.append(Document("<object>", at, item))
    return documents


def stored_documents(cluster: Cluster) -> list[Document]:
    from labkit.topology.kube import apply_plan

    return [apply_plan.restored(item) for item in cluster.slice(STATE_KEY).get("documents", [])]


def apply(cluster: Cluster, given: Given, stdin: TextIO | None = None) -> ApplyResult:
    """kubectl apply: create or update by kind/namespace/name."""
    from labkit.topology.kube import apply_plan

    documents, outcome = apply_plan.applied_documents(
        stored_documents(cluster), documents_of(given, stdin)
    )
    return _change(cluster, documents, outcome)


def delete(cluster: Cluster, given: Given, stdin: TextIO | None = None) -> ApplyResult:
    """kubectl delete -f: remove what the files name."""
    from labkit.topology.kube import apply_plan

    documents, outcome = apply_plan.deleted_documents(
        stored_documents(cluster), documents_of(given, stdin)
    )
    return _change(cluster, documents, outcome)


def _change(
    cluster: Cluster, documents: list[Document], outcome: apply_plan.Outcome
) -> ApplyResult:
    from labkit.topology.kube import apply_plan
    from labkit.topology.kube.manifests import merge_documents

    started = time.perf_counter()
    state = cluster.slice(STATE_KEY)
    snapshot = Topology.model_validate(state["base"]) if "base" in state else cluster.topology
    base = apply_plan.native_base(snapshot, cluster.topology)
    report = merge_documents(documents, base, state.get("kube_version"))  # raises: nothing changed
    wanted = report.topology
    plan = apply_plan.plan_apply(cluster.topology, wanted)
    _carry_out(cluster, plan, wanted)
    state["documents"] = [apply_plan.stored(document) for document in documents]
    state["kube_version"] = report.kube_version
    cluster.save()
    return ApplyResult(outcome.lines, plan, report.notes(), time.perf_counter() - started)


def _carry_out(cluster: Cluster, plan: apply_plan.ApplyPlan, wanted: Topology) -> None:
    topology = cluster.topology
    for key in plan.pods_gone:
        lifecycle.delete_pod(cluster, key, notify=False)
    # Namespaces and policies first, so new pods come up under the policies they are meant to.
    if plan.policies_changed:
        topology.namespaces, topology.policies = dict(wanted.namespaces), dict(wanted.policies)
    for key in plan.pods_new:
        lifecycle.add_pod(cluster, key, wanted.pods[key], notify=False)
    for key in plan.pods_relabelled:
        lifecycle.set_labels(cluster, key, dict(wanted.pods[key].labels), notify=False)
    changed = plan.pods_gone + plan.pods_new + plan.pods_relabelled
    vips = dict(layer_state(cluster).get("vips", {}))
    for key in plan.services_gone:
        services_api.delete_service(cluster, key)
    for key in plan.services_new:
        spec = wanted.services[key]
        if spec.vip is None and key in vips:  # a replaced Service keeps its ClusterIP
            spec = spec.model_copy(update={"vip": vips[key]})
        services_api.add_service(cluster, key, spec)
    if plan.ingress_changed:
        topology.ingress = wanted.ingress
    if changed:
        cluster.pods_changed(changed)  # services, DNS, ingress, policy follow
        return
    if plan.policies_changed:
        policy_layer.push(cluster, force=False)
    if plan.ingress_changed and wanted.ingress is not None:
        ingress_layer.deploy_all(cluster)
