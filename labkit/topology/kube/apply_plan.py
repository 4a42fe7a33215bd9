"""`apply` and `delete` as kubectl means them, decided on paper. Pure.

The lab keeps every document applied so far. Applying files replaces the
documents of the same kind/namespace/name and adds the others; deleting drops
the ones the files name. The documents left are merged again onto the lab's
native topology, and the difference between the lab's topology and that one
is what the lab must change: pods to delete, create or relabel, Services to
delete or create, whether policies or the ingress changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from labkit.topology.kube.documents import Document
from labkit.topology.model import Topology

NATIVE_SECTIONS = ("pods", "services", "policies")


@dataclass
class Outcome:
    """What happened to each document, as kubectl prints it (`created`, `configured`...)."""

    lines: list[str] = field(default_factory=list)

    def add(self, document: Document, verb: str) -> None:
        self.lines.append(f"{document.subject} {verb}")


def _same(a: Document, b: Document) -> bool:
    return json.dumps(a.data, sort_keys=True) == json.dumps(b.data, sort_keys=True)


def applied_documents(
    stored: list[Document], given: list[Document]
) -> tuple[list[Document], Outcome]:
    """The documents after applying `given`: same subject replaced (in place), others added."""
    result = list(stored)
    at = {document.subject: index for index, document in enumerate(result)}
    outcome = Outcome()
    for document in given:
        index = at.get(document.subject)
        if index is None:
            at[document.subject] = len(result)
            result.append(document)
            outcome.add(document, "created")
        else:
            outcome.add(document, "unchanged" if _same(result[index], document) else "configured")
            result[index] = document
    return result, outcome


def deleted_documents(
    stored: list[Document], given: list[Document]
) -> tuple[list[Document], Outcome]:
    """The documents after deleting what `given` names (its content does not matter)."""
    named = {document.subject for document in given}
    outcome = Outcome()
    kept = []
    for document in stored:
        if document.subject in named:
            outcome.add(document, "deleted")
        else:
            kept.append(document)
    found = {document.subject for document in stored}
    outcome.lines += [f"{subject} not found" for subject in sorted(named - found)]
    return kept, outcome


def native_base(snapshot: Topology, current: Topology) -> Topology:
    """The topology the documents are merged onto: the lab's native part as it is now.

    `snapshot` is the native topology from before any manifest; native pods,
    Services and policies added or removed since then (objects without an
    origin) are taken from `current`.
    """
    fields: dict[str, Any] = {name: getattr(snapshot, name) for name in Topology.model_fields}
    for section in NATIVE_SECTIONS:
        fields[section] = {
            key: value for key, value in getattr(current, section).items() if value.origin is None
        }
    return Topology.model_validate(fields)


@dataclass
class ApplyPlan:
    """What the lab must change to go from one topology to the other."""

    pods_gone: list[str] = field(default_factory=list)
    pods_new: list[str] = field(default_factory=list)
    pods_relabelled: list[str] = field(default_factory=list)
    services_gone: list[str] = field(default_factory=list)
    services_new: list[str] = field(default_factory=list)
    policies_changed: bool = False
    ingress_changed: bool = False

    @property
    def empty(self) -> bool:
        return not (
            self.pods_gone
            or self.pods_new
            or self.pods_relabelled
            or self.services_gone
            or self.services_new
            or self.policies_changed
            or self.ingress_changed
        )


def plan_apply(old: Topology, new: Topology) -> ApplyPlan:
    """Pods whose spec changed in more than their labels are replaced (gone, then new);
    a Service that changed is replaced too (it keeps its VIP: see `kept_vip`)."""
    plan = ApplyPlan()
    for key, pod in old.pods.items():
        wanted = new.pods.get(key)
        if wanted is None:
            plan.pods_gone.append(key)
        elif _bare(wanted.model_copy(update={"labels": pod.labels})) != _bare(pod):
            plan.pods_gone.append(key)
            plan.pods_new.append(key)
        elif wanted.labels != pod.labels:
            plan.pods_relabelled.append(key)
    plan.pods_new += [key for key in new.pods if key not in old.pods]
    for key, service in old.services.items():
        wanted_service = new.services.get(key)
        if wanted_service is None or _without_vip(wanted_service) != _without_vip(service):
            plan.services_gone.append(key)
            if wanted_service is not None:
                plan.services_new.append(key)
    plan.services_new += [key for key in new.services if key not in old.services]
    plan.policies_changed = old.namespaces != new.namespaces or _bare_all(
        old.policies
    ) != _bare_all(new.policies)
    plan.ingress_changed = old.ingress != new.ingress
    return plan


def _without_vip(service: Any) -> Any:
    return service.model_copy(update={"vip": None, "origin": None})


def _bare(item: Any) -> Any:
    """Compared without where it was written (a moved line changes nothing)."""
    return item.model_copy(update={"origin": None})


def _bare_all(items: dict[str, Any]) -> dict[str, Any]:
    return {key: _bare(item) for key, item in items.items()}


def stored(document: Document) -> dict[str, Any]:
    """A document as the lab's state keeps it (JSON; its line marks are not kept)."""
    return {"source": document.source, "index": document.index, "data": document.data}


def restored(item: dict[str, Any]) -> Document:
    return Document(item["source"], item["index"], item["data"])
