"""Kubernetes manifests as people write them -> labkit's topology model (pure, offline).

    report = load_manifests(["k8s/"], topology)      # files, directories, "-"
    report.topology                                   # the topology with them merged in
    report.ignored_line(), report.warnings

Objects of namespace `default` are keyed by their name, others as `NS/NAME`;
`resolve` and `slug` turn user input into keys and keys into safe names.
"""

from labkit.topology.kube.documents import Document, parse_documents, read_manifests
from labkit.topology.kube.manifests import Manifests, load_manifests, merge_documents
from labkit.topology.kube.names import resolve, slug
from labkit.topology.kube.schema import DEFAULT_KUBE_VERSION, supported_versions

__all__ = [
    "DEFAULT_KUBE_VERSION",
    "Document",
    "Manifests",
    "load_manifests",
    "merge_documents",
    "parse_documents",
    "read_manifests",
    "resolve",
    "slug",
    "supported_versions",
]
