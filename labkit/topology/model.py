"""The topology data model: what a user writes in a topology file.

Field-level checks live on the models; checks that relate one part of the file
to another (a pod on an unknown node, overlapping CIDRs...) live in
`labkit.topology.validate`, so each error can name its place in the file.
"""

from __future__ import annotations

import hashlib
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
)

from labkit.topology.edge_model import Lvs, Masquerade
from labkit.topology.names import (
    LabelKey,
    Labels,
    LabelValue,
    Name,
    NamespaceName,
    ObjectKey,
    PortName,
    ServicePortName,
)
from labkit.topology.strict import Strict
from labkit.topology.units import parse_loss, parse_rate, parse_time, tc_loss

# Names that refer to something declared elsewhere (a node, a network, a
# service): the cross-reference checks say when one is unknown, and list the
# known ones, which says more than a pattern would.
Ref = str

Backend = Literal["none", "vxlan", "host-gw", "udp", "bgp"]
ProxyMode = Literal["iptables", "nftables", "ipvs"]
Protocol = Literal["TCP", "UDP", "SCTP"]  # SCTP: where the kernel has it
TrafficPolicy = Literal["Cluster", "Local"]
ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]

# Nodes with one of these roles are not cluster members: no pod subnet, no
# backend, no service proxy. A router forwards between underlay networks; an
# external node is a client on the underlay outside the pod network.
NON_MEMBER_ROLES = frozenset({"router", "external"})


class Impairment(Strict):
    """What a link does to the traffic a node sends on it, in tc's units:

        impair: {rate: 10mbit, delay: 50ms, jitter: 5ms, loss: 1%}

    `rate` caps it (bit, kbit, mbit, gbit), `delay` holds each packet back
    (s, ms, us), `jitter` varies that delay (needs a delay), `loss` drops a
    share of packets (a percentage 0-100, with or without the %). A rate alone
    is a tbf qdisc; anything else is netem, the rate folded into it. Applied
    at `up` on the node's underlay interface: it shapes what the node sends, so
    a delay on a whole network adds to each direction of a round trip.
    """

    rate: str | None = Field(default=None, description="e.g. 10mbit")
    delay: str | None = Field(default=None, description="e.g. 50ms")
    jitter: str | None = Field(default=None, description="e.g. 5ms (needs a delay)")
    loss: str | None = Field(default=None, description="e.g. 1% (0-100)")

    @field_validator("rate", "delay", "jitter", "loss", mode="before")
    @classmethod
    def _tc_units(cls, value: object, info: ValidationInfo) -> str | None:
        """Checked with tc's rules; a bare number is refused with the units to use."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            value = repr(value)
        if info.field_name == "rate":
            parse_rate(str(value))
        elif info.field_name == "loss":
            return tc_loss(parse_loss(value))
        else:
            parse_time(str(value), str(info.field_name))
        return str(value)

    def over(self, base: Impairment | None) -> Impairment:
        """This impairment's settings, the unset ones taken from `base`."""
        if base is None:
            return self
        return base.model_copy(update=self.model_dump(exclude_none=True))

    @property
    def needs_netem(self) -> bool:
        return bool(self.delay or self.jitter or self.loss)

    def __str__(self) -> str:
        """ "10mbit 50ms±5ms 1% loss": for graphs and status."""
        parts = [self.rate or ""]
        if self.delay:
            parts.append(self.delay + (f"±{self.jitter}" if self.jitter else ""))
        elif self.jitter:
            parts.append(f"±{self.jitter}")
        if self.loss:
            parts.append(f"{self.loss} loss")
        return " ".join(part for part in parts if part)


class Network(Strict):
    """An underlay segment: a Docker network, always internal."""

    subnet: IPv4Network | None = Field(
        default=None, description="Pin the subnet; by default one is picked that overlaps nothing"
    )
    impair: Impairment | None = Field(
        default=None, description="Impair every node's link on this network (see Impairment)"
    )
    mtu: int | None = Field(
        default=None, ge=68, le=65535,
        description="Underlay MTU (9000: jumbo frames); pods get it less the backend's overhead",
    )  # fmt: skip


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
    run: list[str] = Field(default_factory=list, description="Servers the node runs, as a pod's run")

    @property
    def is_member(self) -> bool:
        return not NON_MEMBER_ROLES.intersection(self.roles)


class BgpSettings(Strict):
    asn: int = Field(default=64512, description="Private AS of the cluster")
    route_reflectors: list[Ref] = Field(
        default_factory=list, description="Nodes acting as route reflectors; empty: full mesh"
    )
    # Short timers suit a lab: a dead node's subnet is withdrawn within seconds.
    hold_time: int = Field(default=9, ge=3, le=65535, description="BGP hold time, seconds")
    keepalive: int = Field(default=3, ge=1, le=21845, description="BGP keepalive, seconds")


class LoadBalancerPool(Strict):
    """Addresses for `type: LoadBalancer` services, announced the way MetalLB does."""

    addresses: list[str] = Field(
        min_length=1,
        description="CIDRs (192.168.50.240/28) or ranges (192.168.50.240-192.168.50.250)",
    )
    mode: Literal["l2", "bgp"] = Field(
        default="l2", description="l2: one node answers ARP; bgp: nodes announce a /32"
    )
    peer: Name | None = Field(default=None, description="bgp: the router node the nodes peer with")
    peer_asn: int = Field(default=64500, description="bgp: the router's AS")


class Cluster(Strict):
    pod_cidr: IPv4Network = IPv4Network("10.244.0.0/16")
    node_prefix: int = Field(
        default=24, ge=8, le=30, description="Prefix length of each node's pod subnet"
    )
    service_cidr: IPv4Network = IPv4Network("10.96.0.0/12")
    backend: Backend = "vxlan"
    proxy_mode: ProxyMode = "iptables"
    iptables_backend: Literal["nft", "legacy"] = Field(
        default="nft",
        description="proxy_mode iptables: iptables-nft (today's default) or iptables-legacy",
    )
    bgp: BgpSettings = Field(default_factory=BgpSettings)
    dns: bool = Field(default=True, description="Run the cluster DNS when there are services")
    load_balancer: LoadBalancerPool | None = None
    localhost_node_ports: bool = Field(
        default=True,
        description="iptables: node ports on 127.0.0.1 (route_localnet + the KUBE-FIREWALL "
        "martian drop, kube-proxy's default); false: --iptables-localhost-nodeports=false",
    )
    masquerade: Masquerade = Field(default_factory=Masquerade)


class PodPort(Strict):
    name: PortName | None = Field(default=None, description="An IANA service name (<= 15)")
    port: int = Field(ge=1, le=65535)
    protocol: Protocol = "TCP"
    host_port: int | None = Field(default=None, ge=1, le=65535)


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


class ReadinessProbe(Strict):
    """A readinessProbe of a manifest pod: tcpSocket or httpGet on a port of the pod."""

    kind: Literal["tcp", "http"]
    port: int | str = Field(description="Number or a pod port's name")
    path: str = "/"
    initial_delay: float = Field(default=0, ge=0)
    period: float = Field(default=10, gt=0)
    timeout: float = Field(default=1, gt=0)
    failure_threshold: int = Field(default=3, ge=1)
    success_threshold: int = Field(default=1, ge=1)


class Pod(Strict):
    node: Ref
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
    readiness: ReadinessProbe | None = Field(
        default=None, description="Ready (a Service endpoint) only while this probe passes"
    )
    origin: Origin | None = None


class ServicePort(Strict):
    name: ServicePortName | None = None
    protocol: Protocol = "TCP"
    port: int = Field(ge=1, le=65535)
    target_port: int | str | None = Field(default=None, description="Number or a pod port's name")
    node_port: int | None = None


class Service(Strict):
    namespace: NamespaceName = "default"
    selector: Labels = Field(default_factory=dict)
    ports: list[ServicePort] = Field(
        default_factory=list, description="Required but for ExternalName"
    )
    type: ServiceType = "ClusterIP"
    session_affinity: Literal["None", "ClientIP"] = "None"
    affinity_timeout: int = Field(
        default=10800,
        ge=1,
        le=86400,
        validation_alias=AliasChoices("affinity_timeout", "timeout_seconds"),
        description="ClientIP affinity timeout, seconds (also spelt timeout_seconds)",
    )
    vip: IPv4Address | Literal["None"] | None = Field(
        default=None,
        validation_alias=AliasChoices("vip", "cluster_ip"),
        description="Pin the ClusterIP (also spelt cluster_ip); `None`: a headless service",
    )
    external_name: str | None = Field(default=None, description="ExternalName: the CNAME target")
    external_traffic_policy: TrafficPolicy = "Cluster"
    internal_traffic_policy: TrafficPolicy = "Cluster"
    health_check_node_port: int | None = Field(
        default=None, description="Pin it (LoadBalancer with external_traffic_policy Local)"
    )
    external_ips: list[IPv4Address] = Field(default_factory=list)
    load_balancer_ip: IPv4Address | None = Field(
        default=None, description="Pin the LoadBalancer address (inside the pool)"
    )
    load_balancer_source_ranges: list[IPv4Network] = Field(default_factory=list)
    origin: Origin | None = None

    @property
    def headless(self) -> bool:
        return self.vip == "None"

    @property
    def has_cluster_ip(self) -> bool:
        """kube-proxy programs only services with a ClusterIP."""
        return not self.headless and self.type != "ExternalName"

    @property
    def pinned_vip(self) -> IPv4Address | None:
        return self.vip if isinstance(self.vip, IPv4Address) else None

    @property
    def has_node_ports(self) -> bool:
        return self.type in ("NodePort", "LoadBalancer")

    @property
    def needs_health_check_node_port(self) -> bool:
        return self.type == "LoadBalancer" and self.external_traffic_policy == "Local"


class IngressRule(Strict):
    host: str | None = Field(default=None, description="A DNS name (checked with the rules)")
    path: str = "/"
    path_type: Literal["Prefix", "Exact"] = "Prefix"
    service: Ref
    port: int | str


class IngressBackend(Strict):
    service: Ref
    port: int | str


class Ingress(Strict):
    controller: Literal["nginx", "haproxy"] = "nginx"
    nodes: list[Ref] = Field(min_length=1, description="Edge nodes that run the controller")
    upstream: Literal["endpoints", "service"] = "endpoints"
    port: int = Field(default=80, ge=1, le=65535)
    rules: list[IngressRule] = Field(default_factory=list)
    default_backend: IngressBackend | None = None
    # L4, as ingress-nginx's tcp-services/udp-services ConfigMaps: port -> "namespace/service:port"
    tcp: dict[int, str] = Field(default_factory=dict, description="TCP port -> ns/service:port")
    udp: dict[int, str] = Field(default_factory=dict, description="UDP port -> ns/service:port")
    lvs: Lvs | None = Field(default=None, description="keepalived virtual_server for the L4 ports")


class Vrrp(Strict):
    vip: IPv4Address
    network: Ref
    priorities: dict[Ref, int] = Field(min_length=1)
    advert_interval: float = Field(default=1.0, gt=0, le=255)
    preempt: bool = True
    router_id: int = Field(default=51, ge=1, le=255)


class Namespace(Strict):
    labels: Labels = Field(
        default_factory=dict,
        description="Matched by namespace selectors (kubernetes.io/metadata.name is implied)",
    )
    isolated: bool = Field(
        default=False,
        description="Pod traffic only within the namespace, plus what policies allow",
    )


class LabelExpression(Strict):
    key: LabelKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[LabelValue] = Field(default_factory=list)


class LabelSelector(Strict):
    """Kubernetes LabelSelector: both parts must match; empty matches everything."""

    match_labels: Labels = Field(default_factory=dict)
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
    port: int | str | None = Field(
        default=None, description="Number or a pod port's name; none: all"
    )
    end_port: int | None = None


class PolicyIngressRule(Strict):
    from_: list[PolicyPeer] = Field(
        default_factory=list, alias="from", description="Empty: any source"
    )
    ports: list[PolicyPort] = Field(default_factory=list, description="Empty: any port")


class PolicyEgressRule(Strict):
    to: list[PolicyPeer] = Field(default_factory=list, description="Empty: any destination")
    ports: list[PolicyPort] = Field(default_factory=list, description="Empty: any port")


class NetworkPolicy(Strict):
    """Kubernetes NetworkPolicy semantics; an empty rule list denies that direction."""

    namespace: NamespaceName = "default"
    pod_selector: LabelSelector = Field(default_factory=LabelSelector)
    policy_types: list[Literal["Ingress", "Egress"]] | None = Field(
        default=None, description="Default: Ingress, plus Egress when there are egress rules"
    )
    ingress: list[PolicyIngressRule] = Field(default_factory=list)
    egress: list[PolicyEgressRule] = Field(default_factory=list)
    origin: Origin | None = None

    def types(self) -> set[str]:
        if self.policy_types is not None:
            return set(self.policy_types)
        return {"Ingress", "Egress"} if self.egress else {"Ingress"}


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
