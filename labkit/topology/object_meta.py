"""What the objects of a topology share: names that refer to other objects, L4
protocols, and, for objects read from Kubernetes manifests, where each came from
and how it is keyed."""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import Field

from labkit.topology.strict import Strict

# Names that refer to something declared elsewhere (a node, a network, a
# service): the cross-reference checks say when one is unknown, and list the
# known ones, which says more than a pattern would.
Ref = str

Protocol = Literal["TCP", "UDP", "SCTP"]  # SCTP: where the kernel has it


def object_key(namespace: str, name: str) -> str:
    """How a manifest's namespaced object is keyed: `NAME` in default, `NS/NAME` elsewhere."""
    return name if namespace == "default" else f"{namespace}/{name}"


def key_name(key: str) -> str:
    """The Kubernetes name in a key (`shop/web` -> `web`)."""
    return key.rpartition("/")[2]


SLUG_MAX = 32  # what native names are held to, so a slug fits where they fit


def slug(key: str) -> str:
    """A unique name for files and network namespaces: `shop/web` -> `shop_web`.

    Kubernetes names have no `_`, so the mapping is one to one; a long result
    is cut and made unique again with a hash of the whole key.
    """
    flat = key.replace("/", "_")
    if len(flat) <= SLUG_MAX:
        return flat
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"{flat[: SLUG_MAX - 9].rstrip('-_.')}-{digest}"


class Origin(Strict):
    """Where an object read from a Kubernetes manifest came from (None: the topology file)."""

    kind: str
    name: str = Field(description="The object's Kubernetes name (a pod's, for workload pods)")
    namespace: str = "default"
    source: str = Field(default="", description="file:line of the document")
    owner: str | None = Field(default=None, description="Kind/name of the workload that made it")
