"""Packet capture commands: tcpdump in a node or in a pod's network namespace. Pure.

tcpdump writes pcap to its stdout, one packet at a time (`-U`, no buffering
delay), so whatever reads the exec stream (Wireshark through a pipe, a file)
sees packets as they pass. Its pid goes to a file first, so that another exec
can stop it with SIGINT: tcpdump then flushes and exits, and the stream ends.
"""

from __future__ import annotations

from collections.abc import Sequence

from labkit.dataplane.pods import POD_IFNAME
from labkit.dataplane.script import q

PID_DIR = "/run/labkit-capture"
NODE_IFACE = "any"  # every interface of the node (Linux cooked capture)
READY = b"listening on"  # what tcpdump prints on stderr once it captures


def default_iface(pod: str | None) -> str:
    return POD_IFNAME if pod else NODE_IFACE


def capture_command(
    capture_id: str, pod: str | None, iface: str | None, filter_words: Sequence[str]
) -> str:
    """Start tcpdump (in `pod`'s namespace, or the node's) writing pcap to stdout."""
    netns = f"ip netns exec {q(pod)} " if pod else ""
    words = " ".join(q(word) for word in filter_words)
    tcpdump = (
        f"tcpdump -i {q(iface or default_iface(pod))} -U --immediate-mode -w - {words}".rstrip()
    )
    pid_file = f"{PID_DIR}/{capture_id}.pid"
    return f"mkdir -p {PID_DIR} && echo $$ > {pid_file} && exec {netns}{tcpdump}"


def stop_command(capture_id: str) -> str:
    """SIGINT to the capture's tcpdump (it flushes, then exits); fine when it is gone."""
    pid_file = f"{PID_DIR}/{capture_id}.pid"
    return f"kill -INT $(cat {pid_file} 2>/dev/null) 2>/dev/null; rm -f {pid_file}; true"
