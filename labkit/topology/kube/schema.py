"""Offline checks of manifests against the Kubernetes OpenAPI schemas.

The schemas are the ones the `kubernetes-validate` package ships per
Kubernetes version (its strict variant: unknown fields are errors, as with
`kubectl apply --validate=strict`).

Two validators per version and kind: fastjsonschema's generated code decides
(about 40 us a document; the code is generated once per machine and kept in
the cache directory, as Python bytecode), and only a document
it refuses goes through jsonschema, which names every problem with its path.
Every `$ref` resolves inside the shipped schemas: nothing is fetched.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
import kubernetes_validate
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

from labkit.errors import Problem, UsageError
from labkit.topology.kube.documents import Document

# The newest Kubernetes the package ships schemas for when this was written;
# `kube_version=` picks another.
DEFAULT_KUBE_VERSION = "1.37"


def supported_versions() -> list[str]:
    """Kubernetes minor versions with schemas, oldest first (`1.25`...)."""
    return sorted({kv_utils.major_minor(v) for v in kv_utils.all_versions()}, key=_order)


def _order(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def pick_version(wanted: str | None) -> str:
    """The schema directory's version for `wanted` (`1.33`, `v1.33.2`); default: the default."""
    wanted = (wanted or DEFAULT_KUBE_VERSION).removeprefix("v")
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?", wanted):
        raise UsageError(f"Kubernetes version {wanted!r} is not like 1.37")
    minor = kv_utils.major_minor(wanted)
    for version in kv_utils.all_versions():
        if kv_utils.major_minor(version) == minor:
            return version
    raise UsageError(
        f"no schemas for Kubernetes {minor} in kubernetes-validate "
        f"{kubernetes_validate.__version__} (it has {', '.join(supported_versions())})"
    )


def _schema_file(api_version: str, kind: str) -> str:
    # As kubernetes-validate names them: rbac.authorization.k8s.io/v1 -> rbac-v1.
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return f"{kind.lower()}-{group_version}.json"


@cache
def _definitions(version: str) -> Resource[Any]:
    return Resource.from_contents(_contents(version, "_definitions.json"))


def _contents(version: str, name: str) -> Any:
    path = f"kubernetes-json-schema/v{version}-local-strict/{name}"
    return kv_utils.schema_contents(path, version)


@cache
def validator(version: str, api_version: str, kind: str) -> jsonschema.protocols.Validator:
    """The compiled validator of one kind (KeyError: no schema for it)."""
    try:
        schema = _contents(version, _schema_file(api_version, kind))
    except FileNotFoundError:
        raise KeyError(kind) from None
    registry: Registry[Any] = Resource.from_contents(schema) @ Registry()
    registry = _definitions(version) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


DEFINITIONS_URI = "https://kubernetes.io/api/_definitions.json"  # the schemas' own $id
# Formats jsonschema does not check either (it checks none unless asked): any value passes.
FORMATS = {name: "" for name in ("int32", "int64", "double", "byte", "date-time")}


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "labkit"
    return Path(os.environ.get("LABKIT_CACHE_DIR") or default) / "kube-schemas"


@cache
def fast_validator(version: str, api_version: str, kind: str) -> Callable[[Any], Any]:
    """fastjsonschema's validator of one kind, generated once and cached as a module."""
    name = _schema_file(api_version, kind)
    try:
        schema = _contents(version, name)
    except FileNotFoundError:
        raise KeyError(kind) from None
    tag = hashlib.sha256(f"{version}/{name}/{fastjsonschema.VERSION}".encode()).hexdigest()[:12]
    path = cache_dir() / f"k8s_{tag}.marshal"
    try:
        code = marshal.loads(path.read_bytes())
    except (OSError, ValueError, EOFError):
        code = compile(_generated(version, schema), f"<kubernetes schema {name}>", "exec")
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(marshal.dumps(code))
        partial.replace(path)  # atomic: a parallel run sees all of it or none
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # fastjsonschema's generated validator, from the shipped schemas
    validate: Callable[[Any], Any] = namespace["validate"]
    return validate


def _generated(version: str, schema: Any) -> str:
    definitions = _contents(version, "_definitions.json")

    def local(uri: str) -> Any:
        if uri.split("#")[0] == DEFINITIONS_URI:
            return definitions
        raise ValueError(f"a Kubernetes schema refers outside itself: {uri}")

    code = fastjsonschema.compile_to_code(
        schema, handlers={"https": local, "http": local}, formats=FORMATS
    )
    root = re.search(r"^def (validate_\w+)\(", code, re.MULTILINE)
    assert root is not None
    return f"{code}\n\nvalidate = {root.group(1)}\n"


def schema_problems(document: Document, version: str) -> list[Problem]:
    """Every place the document breaks its kind's schema, deepest path first per place."""
    try:
        fast_validator(version, document.api_version, document.kind)(document.data)
        return []
    except fastjsonschema.JsonSchemaException:
        pass  # jsonschema says where, and everything that is wrong
    except KeyError:
        pass  # no schema for that kind: said below
    try:
        check = validator(version, document.api_version, document.kind)
    except KeyError:
        return [
            document.problem(
                ("kind",),
                f"Kubernetes {kv_utils.major_minor(version)} has no {document.kind} in "
                f"{document.api_version}",
            )
        ]
    problems: list[Problem] = []
    for error in sorted(check.iter_errors(document.data), key=lambda e: list(e.absolute_path)):
        path = tuple(error.absolute_path)
        extra = _unknown_fields(error)
        if extra:  # point at each unknown field's own line
            problems.extend(document.problem((*path, name), "unknown field") for name in extra)
        else:
            problems.append(document.problem(path, _message(error)))
    return problems


def _unknown_fields(error: jsonschema.ValidationError) -> list[str]:
    if error.validator != "additionalProperties" or not isinstance(error.instance, dict):
        return []
    allowed = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
    return [name for name in error.instance if name not in allowed]


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "enum" and error.path and error.path[-1] in ("kind", "apiVersion"):
        return error.message
    if error.validator in ("type", "enum", "required", "format", "pattern"):
        return error.message
    # anyOf/oneOf (int-or-string and the like): the shortest account is the clearest.
    return json.dumps(error.instance)[:60] + f" is not valid here ({error.validator})"
