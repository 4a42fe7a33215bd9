"""Object keys: a native object's is a name; a manifest's is keyed as Kubernetes scopes it."""

from __future__ import annotations

from collections.abc import Iterator

from labkit.errors import Problem
from labkit.topology.model import Topology, object_key
from labkit.topology.names import LABKIT_NAME_MAX, dns_1035_label_problem, dns_label_problem


def check_object_keys(topology: Topology) -> Iterator[Problem]:
    for field in ("pods", "services", "policies"):
        problem_of = dns_1035_label_problem if field == "services" else dns_label_problem
        for key, item in getattr(topology, field).items():
            origin = item.origin
            if origin is None:
                problem = problem_of(key, LABKIT_NAME_MAX)
                if problem:
                    yield Problem((field, key), f"name {problem}")
            elif key != object_key(origin.namespace, origin.name):
                wanted = object_key(origin.namespace, origin.name)
                yield Problem((field, key), f"a manifest's object is keyed {wanted!r}")
