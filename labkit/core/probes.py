"""Probes: what a node or a pod can send, with typed results.

Each probe runs a real tool (ping, curl, iperf3, a Python socket) inside the
source's network namespace and parses its output. One module per job; this
one gathers their public names, the ones callers use as `probes.X`.
"""

from __future__ import annotations

from labkit.core.probe_batch import (  # noqa: F401  (the probes' public names)
    probe_from_each,
    probe_many,
    tcp_connect,
    udp_request,
)
from labkit.core.probe_http import HttpResult, http_get, parse_curl  # noqa: F401
from labkit.core.probe_iperf import IperfResult, iperf, parse_iperf  # noqa: F401
from labkit.core.probe_ping import PingResult, parse_ping, ping  # noqa: F401
from labkit.core.probe_results import (  # noqa: F401
    ICMP_UNREACHABLE,
    OUTCOMES,
    PORT_UNREACHABLE_CODE,
    PROHIBITED_CODES,
    Job,
    TcpResult,
    UdpResult,
    address_of,
    classify,
    label_of,
    result_of,
)
