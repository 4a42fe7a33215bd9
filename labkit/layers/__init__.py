"""The layers above the pod network, in the order they are applied.

A new layer is a new module with a class following `layers.base.Layer`, plus
one line here.
"""

from labkit.layers.base import Layer
from labkit.layers.convergence import Convergence
from labkit.layers.floating import FloatingLayer
from labkit.layers.ingress import IngressLayer
from labkit.layers.policy import PolicyLayer
from labkit.layers.services import ServicesLayer
from labkit.layers.vrrp import VrrpLayer

LAYERS: tuple[Layer, ...] = (
    Convergence(),  # first: later layers need a pod network that carries traffic
    FloatingLayer(),  # floating IPs: DNAT and routes
    ServicesLayer(),  # service VIPs, node ports, cluster DNS
    IngressLayer(),  # after services: it reads their endpoints
    VrrpLayer(),  # after ingress: its health check curls the local proxy
    PolicyLayer(),  # late: its FORWARD hook must stay first
)

__all__ = ["LAYERS", "Layer"]
