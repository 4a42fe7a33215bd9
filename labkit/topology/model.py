"""The topology data model: what a user writes in a topology file.

Field-level checks live on the models; checks that relate one part of the file
to another (a pod on an unknown node, overlapping CIDRs...) live in
`labkit.topology.validate`, so each error can name its place in the file.

The models are grouped by what they describe (`cluster_model`, `service_model`,
`policy_model`, `edge_model`, `object_meta`); this module holds the nodes, pods
and the whole file, and re-exports the rest so callers import from one place.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any, Literal

from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from labkit.topology.cluster_model import (
    Backend,
    BgpSettings,
    Cluster,
    Impairment,
    LoadBalancerPool,
    Network,
    ProxyMode,
)
from labkit.topology.edge_model import Lvs, Masquerade
from labkit.topology.names import Labels, Name, NamespaceName, ObjectKey, PortName
from labkit.topology.object_meta import (
    SLUG_MAX,
    Origin,
    Protocol,
    Ref,
    key_name,
    object_key,
    slug,
)
from labkit.topology.placement import place_unbound
from labkit.topology.policy_model import (
    IpBlock,
    LabelExpression,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    PolicyEgressRule,
    PolicyIngressRule,
    PolicyPeer,
    PolicyPort,
)
from labkit.topology.service_model import (
    Ingress,
    IngressBackend,
    IngressRule,
    IngressTls,
    Service,
    ServicePort,
    ServiceType,
    TrafficPolicy,
)
from labkit.topology.strict import Strict

__all__ = [
    "NON_MEMBER_ROLES",
    "SLUG_MAX",
    "Backend",
    "BgpSettings",
    "Cluster",
    "FloatingIp",
    "Impairment",
    "Ingress",
    "IngressBackend",
    "IngressRule",
    "IngressTls",
    "IpBlock",
    "LabelExpression",
    "LabelSelector",
    "LoadBalancerPool",
    "Lvs",
    "Masquerade",
    "Namespace",
    "Network",
    "NetworkPolicy",
    "Node",
    "Origin",
    "Pod",
    "PodPort",
    "PolicyEgressRule",
    "PolicyIngressRule",
    "PolicyPeer",
    "PolicyPort",
    "Protocol",
    "ProxyMode",
    "ReadinessProbe",
    "Ref",
    "Service",
    "ServicePort",
    "ServiceType",
    "Topology",
    "TrafficPolicy",
    "Vrrp",
    "key_name",
    "object_key",
    "slug",
]

# Nodes with one of these roles are not cluster members: no pod subnet, no
# backend, no service proxy. A router forwards between underlay networks; an
# external node is a client on the underlay outside the pod network.
NON_MEMBER_ROLES = frozenset({"router", "external"})


class Node(Strict):
    networks: list[Ref] = Field(
        default_factory=list,
        description="Underlay networks the node is on; default: the only network, if there is one",
    )
    roles: list[str] = Field(
        default_factory=list, description="router | external | edge (free-form tags otherwise)"
    )
    image: str | None = Field(default=None, description="Image override for this node")
    host: Name | None = Field(
        default=None, description="Pin the node to this host of the hosts file (multi-host labs)"
    )
    routes: dict[Ref, Ref] = Field(
        default_factory=dict,
        description="Static underlay routes: destination network name -> router node",
    )
    labels: Labels = Field(
        default_factory=dict, description="Node labels, matched by a manifest's nodeSelector"
    )
    impair: dict[Ref, Impairment] = Field(
        default_factory=dict,
        description="Impair this node's link on a network: network name -> Impairment. "
        "Its settings override the network's own `impair`, one by one",
    )
    run: list[str] = Field(
        default_factory=list, description="Servers the node runs, as a pod's run"
    )

    @property
    def is_member(self) -> bool:
        return not NON_MEMBER_ROLES.intersection(self.roles)


class PodPort(Strict):
    name: PortName | None = Field(default=None, description="An IANA service name (<= 15)")
    port: int = Field(ge=1, le=65535)
    protocol: Protocol = "TCP"
    host_port: int | None = Field(default=None, ge=1, le=65535)


class ReadinessProbe(Strict):
    """A readinessProbe of a pod's container: tcpSocket or httpGet on a port of the pod."""

    kind: Literal["tcp", "http"]
    port: int | str = Field(description="Number or a pod port's name")
    path: str = "/"
    initial_delay: float = Field(default=0, ge=0)
    period: float = Field(default=10, gt=0)
    timeout: float = Field(default=1, gt=0)
    failure_threshold: int = Field(default=3, ge=1)
    success_threshold: int = Field(default=1, ge=1)


def _pod_file_schema(schema: dict[str, Any]) -> None:
    """The JSON schema of a pod as a topology file may write it: `node` may be left out
    (the Topology places it), `readiness` may be one probe."""
    schema["required"] = [name for name in schema.get("required", []) if name != "node"]
    readiness = schema["properties"]["readiness"]
    one = readiness["items"]
    schema["properties"]["readiness"] = {
        "description": readiness["description"],
        "anyOf": [one, {"type": "array", "items": one}],
    }


class Pod(Strict):
    model_config = ConfigDict(**Strict.model_config, json_schema_extra=_pod_file_schema)

    # Left out in a topology file: filled in when the Topology is validated (see there).
    node: Ref = Field(description="The node it runs on; left out: the least loaded pod node")
    namespace: NamespaceName = "default"
    labels: Labels = Field(default_factory=dict)
    run: list[str] = Field(default_factory=list, description="Commands of the pod's containers")
    ports: list[PodPort] = Field(default_factory=list)
    ip: IPv4Address | None = Field(
        default=None, description="Pin the pod IP (in its node's subnet)"
    )
    host_network: bool = Field(
        default=False, description="Run in the node's network namespace (no pod IP of its own)"
    )
    readiness: list[ReadinessProbe] = Field(
        default_factory=list,
        description="Ready (a Service endpoint) only while every probe passes (one per "
        "container that has one, as the kubelet's); a single probe is taken too",
    )
    origin: Origin | None = None

    @field_validator("readiness", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        """One probe (how a topology file gave it before there were several) or a list."""
        if value is None:
            return []
        return [value] if isinstance(value, dict | ReadinessProbe) else value


class Vrrp(Strict):
    vip: IPv4Address
    network: Ref
    priorities: dict[Ref, int] = Field(min_length=1)
    advert_interval: float = Field(default=1.0, gt=0, le=255)
    preempt: bool = True
    router_id: int = Field(default=51, ge=1, le=255)


class FloatingIp(Strict):
    ip: IPv4Address = Field(description="Outside the pod, service and underlay ranges")
    pod: Ref = Field(description="The pod it is bound to; it follows the pod when it moves")


class Topology(Strict):
    """A whole topology file. Names follow `labkit.topology.names`: namespaces are
    RFC 1123 DNS labels (<= 63), services RFC 1035 labels, every other name an
    RFC 1123 label of at most 32 characters."""

    name: Name
    networks: dict[Name, Network] = Field(default_factory=lambda: {"underlay": Network()})
    nodes: dict[Name, Node] = Field(min_length=1)
    cluster: Cluster = Field(default_factory=Cluster)
    # Keyed `NAME`, or `NS/NAME` for a manifest's object outside `default` (checks/names.py).
    pods: dict[ObjectKey, Pod] = Field(default_factory=dict)
    services: dict[ObjectKey, Service] = Field(default_factory=dict)
    ingress: Ingress | None = None
    vrrp: Vrrp | None = None
    namespaces: dict[NamespaceName, Namespace] = Field(default_factory=dict)
    policies: dict[ObjectKey, NetworkPolicy] = Field(default_factory=dict)
    floating_ips: dict[Name, FloatingIp] = Field(default_factory=dict)
    manifests: list[str] = Field(
        default_factory=list,
        description="Kubernetes manifest files or directories (relative to this file), merged in",
    )
    # What merging the manifests has to tell (ignored kinds, warnings), for the CLI to print.
    _manifest_notes: list[str] = PrivateAttr(default_factory=list)
    # The merge itself (topology.kube.Manifests): its native base and documents, for `apply`.
    _manifest_report: Any = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _place_pods_without_node(cls, data: Any) -> Any:
        """A pod that names no node goes to the least loaded pod-running node, as a
        scheduler places it; once placed, its node is part of the topology (saved
        with the lab, so a reloaded lab does not place it again)."""
        if not isinstance(data, dict) or not isinstance(data.get("pods"), dict):
            return data
        placed = place_unbound(data["pods"], _member_names(data.get("nodes")), _named_node)
        if not placed:
            return data
        pods = {
            key: {**pod, "node": placed[key]} if key in placed else pod
            for key, pod in data["pods"].items()
        }
        return {**data, "pods": pods}

    @property
    def manifest_report(self) -> Any:
        return self._manifest_report

    @manifest_report.setter
    def manifest_report(self, report: Any) -> None:
        self._manifest_report = report

    @property
    def manifest_notes(self) -> list[str]:
        return self._manifest_notes

    def member_nodes(self) -> list[str]:
        """Cluster members in file order: the nodes that get a pod subnet."""
        return [name for name, node in self.nodes.items() if node.is_member]


def _named_node(pod: Any) -> str | None:
    """The node a pod names (as given, or validated); None when it names none."""
    if isinstance(pod, Pod):
        return pod.node
    if isinstance(pod, dict):
        node = pod.get("node")
        return None if node is None else str(node)
    return ""  # not a pod at all: its own validation says so


def _member_names(nodes: Any) -> list[str]:
    """The pod-running nodes of raw topology data, in file order."""
    if not isinstance(nodes, dict):
        return []
    names = []
    for name, node in nodes.items():
        if isinstance(node, Node):
            roles: Any = node.roles
        else:
            roles = (node.get("roles") if isinstance(node, dict) else None) or []
        if isinstance(roles, list) and not NON_MEMBER_ROLES.intersection(map(str, roles)):
            names.append(str(name))
    return names
