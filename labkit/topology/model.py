"""The topology data model: what a user writes in a topology file.

Field-level checks live on the models; checks that relate one part of the file
to another (a pod on an unknown node, overlapping CIDRs...) live in
`labkit.topology.validate`, so each error can name its place in the file.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$"
Name = str  # a DNS-label-like name: lower case letters, digits and dashes

Backend = Literal["none", "vxlan", "host-gw", "udp", "bgp"]
ProxyMode = Literal["iptables", "nftables", "ipvs"]
Protocol = Literal["TCP", "UDP"]

# Nodes with one of these roles are not cluster members: no pod subnet, no
# backend, no service proxy. A router forwards between underlay networks; an
# external node is a client on the underlay outside the pod network.
NON_MEMBER_ROLES = frozenset({"router", "external"})


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Network(Strict):
    """An underlay segment: a Docker network, always internal."""

    subnet: IPv4Network | None = Field(
        default=None, description="Pin the subnet; by default one is picked that overlaps nothing"
    )


class Node(Strict):
    networks: list[Name] = Field(
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
    routes: dict[str, Name] = Field(
        default_factory=dict,
        description="Static underlay routes: destination network name -> router node",
    )

    @property
    def is_member(self) -> bool:
        return not NON_MEMBER_ROLES.intersection(self.roles)


class BgpSettings(Strict):
    asn: int = Field(default=64512, description="Private AS of the cluster")
    route_reflectors: list[Name] = Field(
        default_factory=list, description="Nodes acting as route reflectors; empty: full mesh"
    )
    # Short timers suit a lab: a dead node's subnet is withdrawn within seconds.
    hold_time: int = Field(default=9, ge=3, le=65535, description="BGP hold time, seconds")
    keepalive: int = Field(default=3, ge=1, le=21845, description="BGP keepalive, seconds")


class Cluster(Strict):
    pod_cidr: IPv4Network = IPv4Network("10.244.0.0/16")
    node_prefix: int = Field(default=24, ge=8, le=30, description="Prefix length of each node's pod subnet")
    service_cidr: IPv4Network = IPv4Network("10.96.0.0/12")
    backend: Backend = "vxlan"
    proxy_mode: ProxyMode = "iptables"
    iptables_backend: Literal["nft", "legacy"] = Field(
        default="nft",
        description="proxy_mode iptables: iptables-nft (today's default) or iptables-legacy",
    )
    bgp: BgpSettings = Field(default_factory=BgpSettings)
    dns: bool = Field(default=True, description="Run the cluster DNS when there are services")


class PodPort(Strict):
    name: str | None = None
    port: int = Field(ge=1, le=65535)
    protocol: Protocol = "TCP"
    host_port: int | None = Field(default=None, ge=1, le=65535)


class Pod(Strict):
    node: Name
    namespace: Name = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    run: list[str] = Field(default_factory=list, description="Commands of the pod's containers")
    ports: list[PodPort] = Field(default_factory=list)
    ip: IPv4Address | None = Field(default=None, description="Pin the pod IP (in its node's subnet)")


class ServicePort(Strict):
    name: str | None = None
    protocol: Protocol = "TCP"
    port: int = Field(ge=1, le=65535)
    target_port: int | str | None = Field(default=None, description="Number or a pod port's name")
    node_port: int | None = None


class Service(Strict):
    namespace: Name = "default"
    selector: dict[str, str] = Field(default_factory=dict)
    ports: list[ServicePort] = Field(min_length=1)
    type: Literal["ClusterIP", "NodePort"] = "ClusterIP"
    session_affinity: Literal["None", "ClientIP"] = "None"
    affinity_timeout: int = Field(default=10800, ge=1, le=86400)
    vip: IPv4Address | None = Field(default=None, description="Pin the ClusterIP")


class IngressRule(Strict):
    host: str | None = None
    path: str = "/"
    path_type: Literal["Prefix", "Exact"] = "Prefix"
    service: Name
    port: int | str


class IngressBackend(Strict):
    service: Name
    port: int | str


class Ingress(Strict):
    controller: Literal["nginx", "haproxy"] = "nginx"
    nodes: list[Name] = Field(min_length=1, description="Edge nodes that run the controller")
    upstream: Literal["endpoints", "service"] = "endpoints"
    port: int = Field(default=80, ge=1, le=65535)
    rules: list[IngressRule] = Field(default_factory=list)
    default_backend: IngressBackend | None = None


class Vrrp(Strict):
    vip: IPv4Address
    network: Name
    priorities: dict[Name, int] = Field(min_length=1)
    advert_interval: float = Field(default=1.0, gt=0, le=255)
    preempt: bool = True
    router_id: int = Field(default=51, ge=1, le=255)


class Namespace(Strict):
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Matched by namespace selectors (kubernetes.io/metadata.name is implied)",
    )
    isolated: bool = Field(
        default=False,
        description="Pod traffic only within the namespace, plus what policies allow",
    )


class LabelExpression(Strict):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)


class LabelSelector(Strict):
    """Kubernetes LabelSelector: both parts must match; empty matches everything."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelExpression] = Field(default_factory=list)


class IpBlock(Strict):
    cidr: str = Field(description="e.g. 10.244.0.0/16 (checked by the loader)")
    except_: list[str] = Field(default_factory=list, alias="except")


class PolicyPeer(Strict):
    """One `from`/`to` entry: selectors (pods of matching namespaces) or an IP block."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IpBlock | None = None


class PolicyPort(Strict):
    protocol: Protocol = "TCP"
    port: int | str | None = Field(default=None, description="Number or a pod port's name; none: all")
    end_port: int | None = None


class PolicyIngressRule(Strict):
    from_: list[PolicyPeer] = Field(default_factory=list, alias="from", description="Empty: any source")
    ports: list[PolicyPort] = Field(default_factory=list, description="Empty: any port")


class PolicyEgressRule(Strict):
    to: list[PolicyPeer] = Field(default_factory=list, description="Empty: any destination")
    ports: list[PolicyPort] = Field(default_factory=list, description="Empty: any port")


class NetworkPolicy(Strict):
    """Kubernetes NetworkPolicy semantics; an empty rule list denies that direction."""

    namespace: Name = "default"
    pod_selector: LabelSelector = Field(default_factory=LabelSelector)
    policy_types: list[Literal["Ingress", "Egress"]] | None = Field(
        default=None, description="Default: Ingress, plus Egress when there are egress rules"
    )
    ingress: list[PolicyIngressRule] = Field(default_factory=list)
    egress: list[PolicyEgressRule] = Field(default_factory=list)

    def types(self) -> set[str]:
        if self.policy_types is not None:
            return set(self.policy_types)
        return {"Ingress", "Egress"} if self.egress else {"Ingress"}


class FloatingIp(Strict):
    ip: IPv4Address = Field(description="Outside the pod, service and underlay ranges")
    pod: Name = Field(description="The pod it is bound to; it follows the pod when it moves")


class Topology(Strict):
    name: Name = Field(pattern=NAME_PATTERN)
    networks: dict[Name, Network] = Field(default_factory=lambda: {"underlay": Network()})
    nodes: dict[Name, Node] = Field(min_length=1)
    cluster: Cluster = Field(default_factory=Cluster)
    pods: dict[Name, Pod] = Field(default_factory=dict)
    services: dict[Name, Service] = Field(default_factory=dict)
    ingress: Ingress | None = None
    vrrp: Vrrp | None = None
    namespaces: dict[Name, Namespace] = Field(default_factory=dict)
    policies: dict[Name, NetworkPolicy] = Field(default_factory=dict)
    floating_ips: dict[Name, FloatingIp] = Field(default_factory=dict)

    @field_validator("namespaces", "policies", "floating_ips")
    @classmethod
    def _more_names_are_labels(cls, value: dict[str, object]) -> dict[str, object]:
        return cls._names_are_labels(value)  # type: ignore[no-any-return]

    @field_validator("networks", "nodes", "pods", "services")
    @classmethod
    def _names_are_labels(cls, value: dict[str, object]) -> dict[str, object]:
        import re

        for key in value:
            if not re.match(NAME_PATTERN, key):
                raise ValueError(
                    f"name {key!r} must be lower case letters, digits and dashes (max 32)"
                )
        return value

    def member_nodes(self) -> list[str]:
        """Cluster members in file order: the nodes that get a pod subnet."""
        return [name for name, node in self.nodes.items() if node.is_member]
