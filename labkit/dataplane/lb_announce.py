"""Which nodes announce a LoadBalancer address, decided as MetalLB's speaker does. Pure.

- Cluster traffic policy: every node with a speaker, as long as the service
  has a usable endpoint anywhere; Local: only the nodes with a local ready
  endpoint (`speaker/layer2_controller.go`, `bgp_controller.go`).
- L2 elects one of them per address: candidates ordered by
  sha256(`node#ip`), the lowest wins (`sortL2Candidates`, no preference
  scores). The node-side speaker (`agents/lb_speaker.py`) runs the same
  election over the peers it hears, so a stopped node is replaced without labkit.
- BGP: every candidate announces the /32; the router spreads over them (ECMP).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from labkit.dataplane.kubeproxy import ProxyPlan

SPEAKER_PROGRAM = "/usr/local/lib/labkit/lb_speaker.py"
SPEAKER_CONFIG = "/etc/labkit/lb-speaker.json"
SPEAKER_STATUS = "/run/labkit/lb-speaker.status"
SPEAKER_PID = "/run/labkit/lb-speaker.pid"
# Heartbeats every 0.2 s; a peer unheard for 1 s is dead (memberlist's probe
# interval is 1 s with a few seconds of suspicion: labkit is quicker on purpose).
HEARTBEAT_SECONDS = 0.2
DEAD_AFTER_SECONDS = 1.0


@dataclass(frozen=True)
class Announcement:
    service: str
    ip: IPv4Address
    candidates: tuple[str, ...]  # the nodes that may announce it, sorted by name


def announcements(
    plans: Mapping[str, ProxyPlan], lb_ips: Mapping[str, IPv4Address]
) -> list[Announcement]:
    """Each LoadBalancer address and the nodes eligible to announce it. `plans`: every
    running node's plan (the node a plan is for is its key)."""
    found = []
    for service, ip in sorted(lb_ips.items()):
        eligible = []
        for node, plan in sorted(plans.items()):
            ports = [s for s in plan.services if s.service == service and ip in s.lb_ips]
            usable = [e for s in ports for e in s.endpoints if e.ready or e.terminating]
            local = [e for e in usable if e.ready and e.node == node]
            if ports and (local if ports[0].external_local else usable):
                eligible.append(node)
        found.append(Announcement(service, ip, tuple(eligible)))
    return found


def l2_order(candidates: Iterable[str], ip: IPv4Address) -> list[str]:
    """MetalLB's election order for one address: the first is the owner."""
    return sorted(candidates, key=lambda n: hashlib.sha256(f"{n}#{ip}".encode()).digest())


def l2_owner(candidates: Iterable[str], ip: IPv4Address) -> str | None:
    ranked = l2_order(candidates, ip)
    return ranked[0] if ranked else None


def speaker_config(
    node: str,
    node_ip: IPv4Address,
    peers: Mapping[str, IPv4Address],
    found: Sequence[Announcement],
) -> str:
    """The L2 speaker's configuration on `node`: its peers and each address's candidates."""
    document = {
        "node": node,
        "node_ip": str(node_ip),
        "peers": {name: str(ip) for name, ip in sorted(peers.items()) if name != node},
        "addresses": {str(a.ip): list(a.candidates) for a in found},
        "interval": HEARTBEAT_SECONDS,
        "dead_after": DEAD_AFTER_SECONDS,
    }
    return json.dumps(document, indent=1, sort_keys=True)


def speaker_start() -> str:
    """Start the speaker unless it runs (it re-reads its configuration by itself)."""
    # By its command line: the pid file outlives a node restart, its number may be reused.
    running = (
        f"[ -f {SPEAKER_PID} ] && grep -qs {SPEAKER_PROGRAM} /proc/$(cat {SPEAKER_PID})/cmdline"
    )
    start = (
        f"nohup python3 {SPEAKER_PROGRAM} {SPEAKER_CONFIG} {SPEAKER_STATUS} "
        f"> /var/log/labkit/lb-speaker.log 2>&1 < /dev/null & echo $! > {SPEAKER_PID}"
    )
    return f"mkdir -p /run/labkit /var/log/labkit\nif ! {{ {running}; }}; then\n  {start}\nfi"
