"""Topology models of traffic that enters or leaves the cluster: pod egress
masquerading (ip-masq-agent's settings) and the L4 entry points' LVS pair."""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Literal

from pydantic import Field

from labkit.topology.strict import Strict


class Masquerade(Strict):
    """Pod traffic to outside the pod and service ranges leaves with the node's address
    (flannel's ip-masq, the CNI bridge's ipMasq), as ip-masq-agent configures it."""

    enabled: bool = Field(default=True, description="Masquerade pod egress on every cluster node")
    non_masquerade_cidrs: list[IPv4Network] = Field(
        default_factory=list,
        description="Destinations reached with the pod's own address, besides the pod and "
        "service CIDRs (ip-masq-agent's nonMasqueradeCIDRs)",
    )
    masq_link_local: bool = Field(
        default=False,
        description="Masquerade to 169.254.0.0/16 too (ip-masq-agent's masqLinkLocal)",
    )


class Lvs(Strict):
    """keepalived + LVS in front of the L4 entries (needs IPVS in the kernel)."""

    mode: Literal["NAT", "DR"] = "NAT"
    scheduler: Literal["rr", "wrr", "lc", "wlc", "sh"] = "rr"
