"""The layer protocol: a part of the model built above the pod network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from labkit.core.cluster import Cluster


class Layer(Protocol):
    name: str

    def wanted(self, cluster: Cluster) -> bool:
        """Whether the topology asks for this layer at all."""
        ...

    def check(self, cluster: Cluster) -> None:
        """Raise before anything is created when the host cannot run this layer."""
        ...

    def build_files(self, cluster: Cluster) -> Mapping[str, str]:
        """At up, shell each node's script runs first, before its pods start (node ->
        shell): the files of the first apply a pod reads as it starts."""
        ...

    def build_parts(self, cluster: Cluster) -> Mapping[str, str]:
        """At up, what each node's script runs for this layer once its pods run (node ->
        shell). Its output reaches `apply` as `cluster.built_parts(name, nodes)`, so
        the first apply costs no exec round; a node missing there gets the full apply."""
        ...

    def apply(self, cluster: Cluster) -> None:
        """Build the layer on a fresh lab (or a node that came back)."""
        ...

    def sync(self, cluster: Cluster, changed_pods: Sequence[str]) -> None:
        """Follow a change of pods (added, deleted, killed, relabelled)."""
        ...

    def services_changed(self, cluster: Cluster) -> None:
        """Follow a change of services (added, deleted, endpoints marked terminating),
        after the services layer reprogrammed them; the layer may not be built yet."""
        ...

    def describe(self, cluster: Cluster) -> dict[str, Any]:
        """What `labkit status` shows of this layer."""
        ...


class BaseLayer:
    """Defaults for a layer that only needs some of the hooks."""

    name = "layer"

    def wanted(self, cluster: Cluster) -> bool:
        return True

    def check(self, cluster: Cluster) -> None:
        pass

    def build_files(self, cluster: Cluster) -> Mapping[str, str]:
        return {}

    def build_parts(self, cluster: Cluster) -> Mapping[str, str]:
        return {}

    def apply(self, cluster: Cluster) -> None:
        pass

    def sync(self, cluster: Cluster, changed_pods: Sequence[str]) -> None:
        pass

    def services_changed(self, cluster: Cluster) -> None:
        pass

    def describe(self, cluster: Cluster) -> dict[str, Any]:
        return {}
