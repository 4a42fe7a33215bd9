"""Load a topology file: YAML -> validated `Topology`, errors naming file:line:col."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from labkit.errors import Problem, TopologyError

if TYPE_CHECKING:  # the model loads with the first topology: the hosts file's checks need none
    from labkit.topology.model import Topology

Marks = dict[tuple[str | int, ...], str]

TOPOLOGY_DIRS = ("topologies",)
MAX_VALUES = 100_000  # far beyond any real topology
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
    try:
        raw = path.read_bytes()
    except OSError as exc:  # a directory, no permission...
        raise TopologyError(
            [Problem((), f"cannot read: {exc.strerror}", str(path))], str(path)
        ) from None
    return parse_topology(decode_text(raw, str(path)), source=str(path))


def _line_col(raw: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in bytes) of a byte offset."""
    line_start = raw.rfind(b"\n", 0, offset) + 1
    return raw.count(b"\n", 0, offset) + 1, offset - line_start + 1


def decode_text(raw: bytes, source: str) -> str:
    """A topology file's text: UTF-8 (with or without a BOM), no NUL bytes."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, col = _line_col(raw, exc.start)
        raise TopologyError(
            [
                Problem(
                    (),
                    f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start} "
                    f"({exc.reason}); a topology file is UTF-8 YAML",
                    f"{source}:{line}:{col}",
                )
            ],
            source,
        ) from None
    nul = raw.find(b"\0")
    if nul >= 0:
        line, col = _line_col(raw, nul)
        raise TopologyError(
            [
                Problem(
                    (),
                    f"not a text file: NUL byte at offset {nul}; a topology file is UTF-8 YAML",
                    f"{source}:{line}:{col}",
                )
            ],
            source,
        )
    return text


def parse_topology(text: str, source: str = "<string>") -> Topology:
    from labkit.topology.model import Topology
    from labkit.topology.validate import check_references

    data, marks = compose_text(text, source)
    try:
        topology = Topology.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path, message = _located(err)
            problems.append(Problem(path, message, where_of(marks, path)))
        raise TopologyError(problems, source) from None
    problems = [
        Problem(p.path, p.message, where_of(marks, p.path)) for p in check_references(topology)
    ]
    if problems:
        raise TopologyError(problems, source)
    if topology.manifests:
        from labkit.topology.kube import load_manifests

        base = Path(source).parent if source != "<string>" else Path.cwd()
        topology = load_manifests([base / path for path in topology.manifests], topology).topology
    return topology


def _yaml_reason(exc: yaml.YAMLError) -> str:
    """What the YAML parser found, without its own "<unicode string>, line N" (we say where)."""
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    if not problem:
        return str(exc)
    return f"{problem} ({context})" if context else str(problem)


def _got(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value) if value is not None else "nothing"


def _located(err: Any) -> tuple[tuple[str | int, ...], str]:
    """The path and message of a pydantic error; a bad dict key is named as the key."""
    path = tuple(err["loc"])
    if path and path[-1] == "[key]":
        return path[:-1], f"bad name: {pydantic_message(err)}"
    return path, pydantic_message(err)


def pydantic_message(err: Any) -> str:
    if err["type"] == "value_error":  # our own validators: the message says it all
        return str(err["ctx"]["error"])
    if err["type"] == "extra_forbidden":
        return "unknown field"
    if err["type"] == "literal_error":
        return f"{err['msg'].replace('Input should be', 'must be')} (got {err['input']!r})"
    if err["type"] == "string_type" and err["input"] is not None:  # YAML read yes/1/a date
        return f"{err['msg']} (got {_got(err['input'])}; quote it to make it a string)"
    if "input" in err and err["type"] != "missing":
        return f"{err['msg']} (got {_got(err['input'])})"
    return str(err["msg"])


def where_of(marks: Marks, path: tuple[str | int, ...]) -> str:
    """The position of the deepest part of `path` that the file has."""
    for end in range(len(path), -1, -1):
        if path[:end] in marks:
            return marks[path[:end]]
    return ""


def compose_text(text: str, source: str) -> tuple[Any, Marks]:
    """Parse YAML keeping each value's position and refusing duplicate keys."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.reader.ReaderError as exc:  # a control character: not a text file
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise TopologyError(
            [
                Problem(
                    (),
                    f"not a text file: character #x{exc.character:04x} is not allowed in YAML",
                    f"{source}:{line}:{col}",
                )
            ],
            source,
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise TopologyError(
            [Problem((), f"not valid YAML: {_yaml_reason(exc)}", where)], source
        ) from None
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
    open_nodes: set[int] = set()  # the nodes being built: an alias to one is a cycle

    def build(node: yaml.Node, path: tuple[str | int, ...]) -> Any:
        where = _mark(source, node.start_mark, columns)
        if id(node) in open_nodes:
            raise TopologyError(
                [Problem(path, "an alias refers to itself (a cycle)", where)], source
            )
        if len(marks) >= MAX_VALUES:  # aliases of aliases can blow up ("billion laughs")
            raise TopologyError(
                [Problem(path, f"more than {MAX_VALUES} values (aliases expand too far)", where)],
                source,
            )
        marks[path] = where
        open_nodes.add(id(node))
        try:
            return build_node(node, path)
        finally:
            open_nodes.discard(id(node))

    def build_node(node: yaml.Node, path: tuple[str | int, ...]) -> Any:
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
