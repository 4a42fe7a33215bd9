"""labkit: emulate a container platform's network model inside Docker, test it with pytest.

The public Python API is what this package exports (see the README's "Python API").
"""

from labkit import expect
from labkit.core.capture import Capture
from labkit.core.endpoint import Endpoint, Target
from labkit.core.handles import Link, NodeHandle, PodHandle
from labkit.core.probes import HttpResult, IperfResult, PingResult, TcpResult
from labkit.errors import FeatureMissing, LabkitError, TopologyError, UsageError
from labkit.faults import Fault, Faults
from labkit.lab import Lab
from labkit.layers.ingress import IngressConfigError
from labkit.layers.services_api import ServiceHandle
from labkit.load import ContinuousClient, LoadResult
from labkit.topology import load_topology, parse_topology

__all__ = [
    "Capture",
    "ContinuousClient",
    "Endpoint",
    "Fault",
    "Faults",
    "FeatureMissing",
    "HttpResult",
    "IngressConfigError",
    "IperfResult",
    "Lab",
    "LabkitError",
    "Link",
    "LoadResult",
    "NodeHandle",
    "PingResult",
    "PodHandle",
    "ServiceHandle",
    "Target",
    "TcpResult",
    "TopologyError",
    "UsageError",
    "expect",
    "load_topology",
    "parse_topology",
]
__version__ = "0.1.0"
