"""The Kubernetes kinds labkit knows: those it models and those it accepts and ignores."""

from __future__ import annotations

# Kinds that make labkit objects (pods, services, policies, ingress, namespaces).
MODELLED: frozenset[tuple[str, str]] = frozenset(
    {
        ("v1", "Namespace"),
        ("v1", "Pod"),
        ("v1", "Service"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "ReplicaSet"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("networking.k8s.io/v1", "Ingress"),
        ("networking.k8s.io/v1", "IngressClass"),
    }
)
WORKLOADS = frozenset({"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"})

# Kinds that labkit accepts and does not emulate: checked against their schema,
# then listed as ignored, with the reason.
NO_NETWORK_MEANING = "no network meaning"
RUN_TO_COMPLETION = "run-to-completion pods are not emulated"
IGNORED: dict[tuple[str, str], str] = {
    **dict.fromkeys(
        [
            ("v1", "ConfigMap"),
            ("v1", "Secret"),
            ("v1", "ServiceAccount"),
            ("v1", "LimitRange"),
            ("v1", "ResourceQuota"),
            ("v1", "PersistentVolume"),
            ("v1", "PersistentVolumeClaim"),
            ("rbac.authorization.k8s.io/v1", "Role"),
            ("rbac.authorization.k8s.io/v1", "RoleBinding"),
            ("rbac.authorization.k8s.io/v1", "ClusterRole"),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
            ("policy/v1", "PodDisruptionBudget"),
            ("autoscaling/v1", "HorizontalPodAutoscaler"),
            ("autoscaling/v2", "HorizontalPodAutoscaler"),
            ("scheduling.k8s.io/v1", "PriorityClass"),
            ("storage.k8s.io/v1", "StorageClass"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ],
        NO_NETWORK_MEANING,
    ),
    # A Job's pods run to completion and go: no Service endpoint, nothing to reach.
    ("batch/v1", "Job"): RUN_TO_COMPLETION,
    ("batch/v1", "CronJob"): RUN_TO_COMPLETION,
}

CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "IngressClass",
        "ClusterRole",
        "ClusterRoleBinding",
        "PersistentVolume",
        "PriorityClass",
        "StorageClass",
        "CustomResourceDefinition",
    }
)


def is_namespaced(api_version: str, kind: str) -> bool:
    return kind not in CLUSTER_SCOPED


def kind_problem(api_version: str, kind: str) -> str | None:
    """Why labkit cannot take this apiVersion/kind, or None when it can."""
    if (api_version, kind) in MODELLED or (api_version, kind) in IGNORED:
        return None
    versions = sorted(v for v, k in MODELLED | set(IGNORED) if k == kind)
    if versions:
        return f"{kind} is known as apiVersion {', '.join(versions)}, not {api_version!r}"
    return f"labkit does not know kind {kind!r} ({api_version}); it models " + ", ".join(
        sorted({k for _, k in MODELLED})
    )
