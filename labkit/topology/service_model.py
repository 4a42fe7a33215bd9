"""Topology models of Services and of the Ingress in front of them."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Literal

from pydantic import AliasChoices, Field, model_validator

from labkit.topology.edge_model import Lvs
from labkit.topology.names import Labels, NamespaceName, ServicePortName
from labkit.topology.object_meta import Origin, Protocol, Ref
from labkit.topology.strict import Strict

TrafficPolicy = Literal["Cluster", "Local"]
ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]


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


class IngressTls(Strict):
    """Hosts served over TLS with one certificate (an Ingress's `spec.tls` entry)."""

    hosts: list[str] = Field(
        default_factory=list, description="DNS names (`*.example.com` too) it is served for"
    )
    secret: str | None = Field(
        default=None, description="The kubernetes.io/tls Secret it came from (NS/NAME), if any"
    )
    certificate: str | None = Field(
        default=None,
        description="PEM certificate (chain); none: the lab's self-signed one "
        "(ingress-nginx's default fake certificate)",
    )
    key: str | None = Field(default=None, description="PEM private key of the certificate")

    @model_validator(mode="after")
    def _both_or_neither(self) -> IngressTls:
        if (self.certificate is None) != (self.key is None):
            raise ValueError("give certificate and key together, or neither")
        if self.certificate is not None and "-----BEGIN " not in self.certificate:
            raise ValueError("certificate is not PEM (-----BEGIN CERTIFICATE-----...)")
        if self.key is not None and "PRIVATE KEY-----" not in self.key:
            raise ValueError("key is not a PEM private key (-----BEGIN PRIVATE KEY-----...)")
        return self


class Ingress(Strict):
    controller: Literal["nginx", "haproxy"] = "nginx"
    nodes: list[Ref] = Field(min_length=1, description="Edge nodes that run the controller")
    upstream: Literal["endpoints", "service"] = "endpoints"
    port: int = Field(default=80, ge=1, le=65535)
    tls_port: int = Field(default=443, ge=1, le=65535, description="HTTPS, when `tls` is set")
    tls: list[IngressTls] = Field(
        default_factory=list, description="Terminate TLS on `tls_port` for these hosts"
    )
    rules: list[IngressRule] = Field(default_factory=list)
    default_backend: IngressBackend | None = None
    # L4, as ingress-nginx's tcp-services/udp-services ConfigMaps: port -> "namespace/service:port"
    tcp: dict[int, str] = Field(default_factory=dict, description="TCP port -> ns/service:port")
    udp: dict[int, str] = Field(default_factory=dict, description="UDP port -> ns/service:port")
    lvs: Lvs | None = Field(default=None, description="keepalived virtual_server for the L4 ports")
