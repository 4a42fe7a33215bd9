"""Reading Kubernetes manifests: files, directories, stdin, multi-document YAML.

Every document keeps its file, its index in the file and each value's line, so
that a problem can say `file:line: Kind/namespace/name: field.path: message`.

Fast: LibYAML builds the data, and the lines are only worked out (by composing
the file again) when a problem has to be told. A file with anchors or aliases,
duplicate keys or a syntax error takes the careful path at once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from labkit.errors import Problem, TopologyError
from labkit.topology.loader import MERGE_TAG, Marks, compose_node

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
    lines: LazyMarks | None = field(default=None, repr=False, compare=False)

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
        if not self.marks and self.lines is not None:
            if not path and not self.base:  # the document's own line: no need to compose
                return self.lines.start(self.index)
            self.marks = self.lines.of(self.index)
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


class _Careful(Exception):
    """The fast path cannot tell this file right: take the careful one."""


class _FastLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [key.value for key, _ in node.value if key.tag != MERGE_TAG]
        if len(keys) != len(set(keys)):
            raise _Careful  # a duplicate key: the careful path says where
        return dict(super().construct_mapping(node, deep=deep))


class LazyMarks:
    """The lines of a file's documents, worked out the first time one is asked for."""

    def __init__(self, text: str, source: str) -> None:
        self.text, self.source = text, source
        self._by_index: dict[int, Marks] | None = None
        self._starts: dict[int, str] | None = None

    def start(self, index: int) -> str:
        """`file:line` where document `index` begins (its first line of content)."""
        if self._starts is None:
            self._starts = _document_starts(self.text, self.source)
        return self._starts.get(index) or self.of(index).get((), self.source)

    def of(self, index: int) -> Marks:
        if self._by_index is None:
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            roots = list(yaml.compose_all(self.text, Loader=loader))
            self._by_index = {
                at: compose_node(root, self.source, columns=False)[1]
                for at, root in enumerate(roots)
                if root is not None
            }
        return self._by_index.get(index, {})


def _document_starts(text: str, source: str) -> dict[int, str]:
    """Each document's first line of content, by the `---` lines (as compose_all counts)."""
    starts: dict[int, str] = {}
    index, content, explicit = 0, False, False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("---") and (len(line) == 3 or line[3] in " \t"):
            if content or explicit:
                index += 1
            explicit, content = True, False
            rest = line[3:].strip()
            if rest and not rest.startswith("#"):
                starts[index], content = f"{source}:{number}", True
        elif line.strip() and not line.lstrip().startswith(("#", "%")) and not content:
            starts[index], content = f"{source}:{number}", True
    return starts


def parse_documents(text: str, source: str, problems: list[Problem]) -> list[Document]:
    """The objects of one file; a `v1 List`'s items are objects of their own."""
    if "&" not in text and "*" not in text:  # no anchors or aliases: nothing to expand
        try:
            loaded = list(yaml.load_all(text, Loader=_FastLoader))
        except (yaml.YAMLError, _Careful):
            pass
        else:
            lines = LazyMarks(text, source)
            found: list[tuple[int, Any, Marks]] = [
                (index, data, {}) for index, data in enumerate(loaded) if data is not None
            ]
            return _documents(found, source, problems, lines)
    return _parse_carefully(text, source, problems)


def _parse_carefully(text: str, source: str, problems: list[Problem]) -> list[Document]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        roots = list(yaml.compose_all(text, Loader=loader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problems.append(Problem((), f"not valid YAML: {exc}", where))
        return []
    found: list[tuple[int, Any, Marks]] = []
    for index, root in enumerate(roots):
        if root is None:
            continue  # an empty document (`---` twice)
        data, marks, duplicates = compose_node(root, source, columns=False)
        problems.extend(duplicates)
        if data is not None:
            found.append((index, data, marks))
    return _documents(found, source, problems, None)


def _documents(
    found: list[tuple[int, Any, Marks]],
    source: str,
    problems: list[Problem],
    lines: LazyMarks | None,
) -> list[Document]:
    documents: list[Document] = []
    for index, data, marks in found:
        document = Document(source, index, data, marks, (), lines)
        if not isinstance(data, dict):
            problems.append(Problem((), "a manifest document is a mapping", document.where()))
            continue
        if data.get("kind") == "List" and isinstance(data.get("items"), list):
            for at, item in enumerate(data["items"]):
                if isinstance(item, dict):
                    documents.append(Document(source, index, item, marks, ("items", at), lines))
                else:
                    problems.append(document.problem(("items", at), "a list item is a mapping"))
            continue
        documents.append(document)
    return documents
