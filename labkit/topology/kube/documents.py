"""Reading Kubernetes manifests: files, directories, stdin, multi-document YAML.

Every document keeps its file, its index in the file and each value's line, so
that a problem can say `file:line: Kind/namespace/name: field.path: message`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from labkit.errors import Problem, TopologyError
from labkit.topology.loader import Marks, compose_node

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"
Path_ = tuple[str | int, ...]


@dataclass
class Document:
    """One Kubernetes object as written, with where each of its values is."""

    source: str  # the file, or "<stdin>"
    index: int  # the document's place in its file (0-based)
    data: dict[str, Any]
    marks: Marks = field(default_factory=dict, repr=False)
    base: Path_ = ()  # where the object sits in the document (`items.N` of a v1 List)

    @property
    def kind(self) -> str:
        return str(self.data.get("kind", ""))

    @property
    def api_version(self) -> str:
        return str(self.data.get("apiVersion", ""))

    @property
    def metadata(self) -> dict[str, Any]:
        meta = self.data.get("metadata")
        return meta if isinstance(meta, dict) else {}

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace") or "default")

    @property
    def subject(self) -> str:
        """`Kind/namespace/name` (`Kind/name` for a cluster-scoped kind)."""
        from labkit.topology.kube.kinds import is_namespaced

        kind = self.kind or "(no kind)"
        name = self.name or "(no name)"
        if is_namespaced(self.api_version, self.kind):
            return f"{kind}/{self.namespace}/{name}"
        return f"{kind}/{name}"

    @property
    def line(self) -> int:
        return int(self.where().rpartition(":")[2] or 0)

    def where(self, path: Path_ = ()) -> str:
        """`file:line` of the deepest part of `path` the document has."""
        full = (*self.base, *path)
        for end in range(len(full), -1, -1):
            if full[:end] in self.marks:
                return self.marks[full[:end]]
        return self.source

    def problem(self, path: Path_, message: str) -> Problem:
        return Problem(path, message, self.where(path), self.subject)


def read_manifests(paths: Sequence[str | Path], stdin: TextIO | None = None) -> list[Document]:
    """Every document of the files, of the directories' manifests (sorted), of `-` (stdin)."""
    documents: list[Document] = []
    problems: list[Problem] = []
    for path in paths:
        for source, text in _texts(path, stdin, problems):
            documents.extend(parse_documents(text, source, problems))
    if problems:
        raise TopologyError(problems, "manifests")
    return documents


def _texts(
    path: str | Path, stdin: TextIO | None, problems: list[Problem]
) -> Iterator[tuple[str, str]]:
    if str(path) == STDIN:
        yield "<stdin>", (stdin or sys.stdin).read()
        return
    path = Path(path)
    if path.is_dir():
        # As `kubectl apply -f DIR`: the directory's own manifests, in name order.
        for child in sorted(path.iterdir()):
            if child.is_file() and child.suffix in MANIFEST_SUFFIXES:
                yield str(child), child.read_text()
    elif path.is_file():
        yield str(path), path.read_text()
    else:
        problems.append(Problem((), f"no such file or directory: {path}", str(path)))


def parse_documents(text: str, source: str, problems: list[Problem]) -> list[Document]:
    """The objects of one file; a `v1 List`'s items are objects of their own."""
    documents: list[Document] = []
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        roots = list(yaml.compose_all(text, Loader=loader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problems.append(Problem((), f"not valid YAML: {exc}", where))
        return []
    for index, root in enumerate(roots):
        if root is None:
            continue  # an empty document (`---` twice)
        data, marks, duplicates = compose_node(root, source, columns=False)
        problems.extend(duplicates)
        if data is None:
            continue
        if not isinstance(data, dict):
            problems.append(Problem((), "a manifest document is a mapping", marks[()]))
            continue
        document = Document(source, index, data, marks)
        if data.get("kind") == "List" and isinstance(data.get("items"), list):
            for at, item in enumerate(data["items"]):
                if isinstance(item, dict):
                    documents.append(Document(source, index, item, marks, ("items", at)))
                else:
                    problems.append(document.problem(("items", at), "a list item is a mapping"))
            continue
        documents.append(document)
    return documents
