"""labkit: emulate a container platform's network model inside Docker, test it with pytest.

The public Python API is what this package exports (see the README's "Python API").
Names are imported on first use (PEP 562), so that `labkit --help` and every
`labkit exec` start without loading the whole library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from labkit.lazy import lazy_exports

_WHERE = {
    "Capture": "labkit.core.capture",
    "ContinuousClient": "labkit.load",
    "Endpoint": "labkit.core.endpoint",
    "Fault": "labkit.faults",
    "Faults": "labkit.faults",
    "FeatureMissing": "labkit.errors",
    "HttpResult": "labkit.core.probes",
    "IngressConfigError": "labkit.layers.ingress",
    "IperfResult": "labkit.core.probes",
    "Lab": "labkit.lab",
    "LabkitError": "labkit.errors",
    "Link": "labkit.core.handles",
    "LoadResult": "labkit.load",
    "NodeHandle": "labkit.core.handles",
    "PingResult": "labkit.core.probes",
    "PodHandle": "labkit.core.handles",
    "ServiceHandle": "labkit.layers.services_api",
    "Target": "labkit.core.endpoint",
    "TcpResult": "labkit.core.probes",
    "TopologyError": "labkit.errors",
    "UsageError": "labkit.errors",
    "expect": "labkit.expect",
    "load_topology": "labkit.topology",
    "parse_topology": "labkit.topology",
}

if TYPE_CHECKING:
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


__getattr__ = lazy_exports("labkit", _WHERE, globals())

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
