"""Topology models of the underlay and the cluster-wide settings: networks,
link impairments, the backend and proxy mode, BGP and the LoadBalancer pool."""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from labkit.topology.edge_model import Masquerade
from labkit.topology.names import Name
from labkit.topology.object_meta import Ref
from labkit.topology.strict import Strict
from labkit.topology.units import parse_loss, parse_rate, parse_time, tc_loss

Backend = Literal["none", "vxlan", "host-gw", "udp", "bgp"]
ProxyMode = Literal["iptables", "nftables", "ipvs"]
# bridge: the engine's Linux bridge (the host's netfilter sees every frame); macvlan:
# the nodes' interfaces on one shared parent, frames passed between them directly.
NetworkDriver = Literal["bridge", "macvlan"]
# bridge: each node's pods on its cni0 bridge (flannel, kubenet); ptp: each pod's veth
# routed by a /32, no bridge (kind's kindnet, Calico): one hop less on every packet.
CniPlugin = Literal["bridge", "ptp"]


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
    driver: NetworkDriver = Field(
        default="bridge",
        description="bridge: Docker's bridge network; macvlan: the nodes as on one physical "
        "segment (no host bridge or host netfilter on the way: closer to a real cluster's "
        "wire, and faster); one engine only",
    )


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
    cni_plugin: CniPlugin = Field(
        default="bridge",
        description="How each pod is wired: bridge (the node's cni0 bridge, as flannel) or "
        "ptp (a veth routed by a /32 route, no bridge, as kindnet and Calico: faster)",
    )
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

    @property
    def bridged_pods(self) -> bool:
        """Pods on a bridge: their frames reach iptables only through br_netfilter."""
        return self.cni_plugin == "bridge"
