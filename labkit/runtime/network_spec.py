"""What a lab's underlay network is, whichever runtime makes it: its engine name,
labels, address pool, whether it is internal, its MTU. Pure data; the runtimes
hand it to their engine (or, the fake, keep it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Any

import docker.types

from labkit.runtime.base import LAB_LABEL, NETWORK_LABEL, network_name

MTU_OPTION = "com.docker.network.driver.mtu"


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    labels: dict[str, str]
    subnet: IPv4Network
    ip_range: IPv4Network | None = None  # where the engine may pick addresses itself
    internal: bool = True  # nothing a lab sends can leave the host (or the overlay)
    mtu: int | None = None  # every node interface's on it; the engine's default otherwise
    options: dict[str, str] = field(default_factory=dict)  # the driver's

    def ipam(self) -> docker.types.IPAMConfig:
        pool = docker.types.IPAMPool(
            subnet=str(self.subnet), iprange=str(self.ip_range) if self.ip_range else None
        )
        return docker.types.IPAMConfig(pool_configs=[pool])

    def driver_options(self) -> dict[str, str] | None:
        options = {**self.options, **({MTU_OPTION: str(self.mtu)} if self.mtu else {})}
        return options or None

    def create_args(self) -> dict[str, Any]:
        """The engine's `networks.create` arguments but the driver's own (attachable...)."""
        return {
            "internal": self.internal,
            "ipam": self.ipam(),
            "labels": dict(self.labels),
            "options": self.driver_options(),
            "check_duplicate": True,
        }


def lab_network(
    lab: str,
    network: str,
    subnet: IPv4Network,
    extra_labels: Mapping[str, str] | None = None,
    mtu: int | None = None,
) -> NetworkSpec:
    """The network `network` of lab `lab`: labelled so that whatever a crash leaves is found."""
    labels = {LAB_LABEL: lab, NETWORK_LABEL: network, **(extra_labels or {})}
    return NetworkSpec(network_name(lab, network), labels, subnet, mtu=mtu)
