"""What converting one manifest gives: a model object and how to point back at the file."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labkit.topology.kube.documents import Document, Path_

Trace = Callable[[Path_], Path_]  # a path inside the model object -> a path in the document


def camel(part: str | int) -> str | int:
    """A model field name as the manifest spells it: `ip_block` -> `ipBlock`."""
    if not isinstance(part, str):
        return part
    part = part.rstrip("_")  # `from_`, `except_`
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), part)


def under(prefix: Path_) -> Trace:
    """The model path mirrors the manifest's below `prefix`, in camelCase."""
    return lambda path: (*prefix, *(camel(part) for part in path))


@dataclass
class Converted:
    section: str  # "pods" | "services" | "policies" | "namespaces"
    key: str
    value: dict[str, Any]
    document: Document
    trace: Trace = field(default=under(()))
    # pods only: how the scheduler is to place it
    node_name: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    every_node: bool = False  # a DaemonSet's pod, one per node
    http_ports: set[int] = field(default_factory=set)  # TCP ports served as HTTP

    def doc_path(self, model_path: Path_) -> Path_:
        return self.trace(model_path)
