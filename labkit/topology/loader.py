"""Load a topology file: YAML -> validated `Topology`, errors naming file:line:col."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from labkit.errors import Problem, TopologyError
from labkit.topology.model import Topology
from labkit.topology.validate import check_references

Marks = dict[tuple[str | int, ...], str]

TOPOLOGY_DIRS = ("topologies",)
MERGE_TAG = "tag:yaml.org,2002:merge"


def merged_keys(node: yaml.MappingNode) -> set[Any]:
    """Keys a mapping got from its merge keys (overriding those is not a duplicate)."""
    keys: set[Any] = set()
    for key_node, value_node in node.value:
        if key_node.tag != MERGE_TAG:
            continue
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            if isinstance(source, yaml.MappingNode):
                keys |= {k.value for k, _ in source.value}
    return keys


def resolve_topology_path(ref: str | Path, search_from: Path | None = None) -> Path:
    """A path, or a name looked up as topologies/<name>.yaml upwards from `search_from`."""
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise TopologyError([Problem((), f"no such file: {path}")], str(path))
        return path
    start = (search_from or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        for sub in TOPOLOGY_DIRS:
            for suffix in (".yaml", ".yml"):
                candidate = folder / sub / f"{ref}{suffix}"
                if candidate.exists():
                    return candidate
    raise TopologyError([Problem((), f"no topology named {ref!r} under topologies/")], str(ref))


def load_topology(ref: str | Path, search_from: Path | None = None) -> Topology:
    path = resolve_topology_path(ref, search_from)
    return parse_topology(path.read_text(), source=str(path))


def parse_topology(text: str, source: str = "<string>") -> Topology:
    data, marks = _compose(text, source)
    try:
        topology = Topology.model_validate(data)
    except ValidationError as exc:
        problems = [
            Problem(tuple(err["loc"]), _pydantic_message(err), _where(marks, tuple(err["loc"])))
            for err in exc.errors()
        ]
        raise TopologyError(problems, source) from None
    problems = [
        Problem(p.path, p.message, _where(marks, p.path)) for p in check_references(topology)
    ]
    if problems:
        raise TopologyError(problems, source)
    if topology.manifests:
        from labkit.topology.kube import load_manifests

        base = Path(source).parent if source != "<string>" else Path.cwd()
        report = load_manifests([base / path for path in topology.manifests], topology)
        topology = report.topology
        topology.manifest_notes.extend(report.notes())
    return topology


def _pydantic_message(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field"
    if err["type"] == "literal_error":
        return f"{err['msg'].replace('Input should be', 'must be')} (got {err['input']!r})"
    return str(err["msg"])


def _where(marks: Marks, path: tuple[str | int, ...]) -> str:
    """The position of the deepest part of `path` that the file has."""
    for end in range(len(path), -1, -1):
        if path[:end] in marks:
            return marks[path[:end]]
    return ""


def _compose(text: str, source: str) -> tuple[Any, Marks]:
    """Parse YAML keeping each value's position and refusing duplicate keys."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise TopologyError([Problem((), f"not valid YAML: {exc}", where)], source) from None
    if root is None:
        raise TopologyError([Problem((), "the file is empty", source)], source)
    data, marks, problems = compose_node(root, source)
    if problems:
        raise TopologyError(problems, source)
    if not isinstance(data, dict):
        raise TopologyError([Problem((), "a topology is a mapping", marks[()])], source)
    return data, marks


def compose_node(
    root: yaml.Node, source: str, columns: bool = True
) -> tuple[Any, Marks, list[Problem]]:
    """A composed YAML node as data, with each value's position and the duplicate keys."""
    marks: Marks = {}
    problems: list[Problem] = []
    constructor = yaml.SafeLoader("")

    def build(node: yaml.Node, path: tuple[str | int, ...]) -> Any:
        marks[path] = _mark(source, node.start_mark, columns)
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            # `<<: *anchor` merge keys: the merged entries come first, so that
            # the mapping's own keys override them (YAML 1.1 semantics).
            for key_node, value_node in node.value:
                if key_node.tag == MERGE_TAG:
                    merged = build(value_node, path)
                    for item in merged if isinstance(merged, list) else [merged]:
                        if isinstance(item, dict):
                            result.update(item)
            for key_node, value_node in node.value:
                if key_node.tag == MERGE_TAG:
                    continue
                key = constructor.construct_object(key_node)
                if key in result and key not in merged_keys(node):
                    where = _mark(source, key_node.start_mark, columns)
                    problems.append(Problem((*path, key), "duplicate name", where))
                result[key] = build(value_node, (*path, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [build(item, (*path, index)) for index, item in enumerate(node.value)]
        return constructor.construct_object(node)

    return build(root, ()), marks, problems


def _mark(source: str, mark: yaml.Mark, columns: bool) -> str:
    return f"{source}:{mark.line + 1}:{mark.column + 1}" if columns else f"{source}:{mark.line + 1}"
