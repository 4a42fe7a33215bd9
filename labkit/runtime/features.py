"""Kernel features, probed once in a throwaway node container.

A feature the host lacks is never faked: tests that need it skip with the
reason, and features that need it fail with it before anything is created.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from labkit.errors import FeatureMissing

# name -> (shell test run in a fresh network namespace of a node, what needs it)
PROBES: dict[str, tuple[str, str]] = {
    "bridge": ("ip link add lkbr0 type bridge", "the per-node pod bridge"),
    "veth": ("ip link add lkv0 type veth peer name lkv1", "pods"),
    "vxlan": ("ip link add lkvx0 type vxlan id 42 dstport 4789", "backend vxlan"),
    "tun": ("ip tuntap add dev lktun0 mode tun", "backend udp"),
    "iptables": ("iptables -t nat -L -n", "service proxy (iptables)"),
    "nftables": ("nft add table ip lkprobe && nft delete table ip lkprobe", "proxy mode nftables"),
    "conntrack": ("conntrack -L", "service proxy"),
    "br_netfilter": (
        "test -e /proc/sys/net/bridge/bridge-nf-call-iptables",
        "services on bridged pods",
    ),
    "statistic": (
        "iptables -t nat -N LKP && iptables -t nat -A LKP -m statistic --mode random "
        "--probability 0.5 -j RETURN && iptables -t nat -F LKP && iptables -t nat -X LKP",
        "service load balancing",
    ),
    "recent": (
        "iptables -t nat -N LKR && iptables -t nat -A LKR -m recent --name lk --rcheck "
        "--seconds 10 -j RETURN && iptables -t nat -F LKR && iptables -t nat -X LKR",
        "session affinity",
    ),
    # qdiscs on a veth: the dummy link type is a module some hosts lack, unlike veth.
    "tbf": (
        "ip link add lkq0 type veth peer name lkq1 && tc qdisc add dev lkq0 root tbf rate 1mbit burst 32k latency 50ms",
        "rate limits",
    ),
    "htb": (
        "ip link add lkq0 type veth peer name lkq1 && tc qdisc add dev lkq0 root handle 1: htb",
        "rate limits",
    ),
    "netem": (
        "ip link add lkq0 type veth peer name lkq1 && tc qdisc add dev lkq0 root netem delay 1ms",
        "delay/jitter/loss faults",
    ),
    # ipvsadm first: asking the kernel for IPVS loads the module where there is one.
    "ipvs": ("ipvsadm -L -n >/dev/null && test -e /proc/net/ip_vs", "proxy mode ipvs"),
    "dummy": ("ip link add lkdum0 type dummy", "proxy mode ipvs (the kube-ipvs0 device)"),
    "macvlan": (
        "ip link add lkv0 type veth peer name lkv1 && ip link add lkmv0 link lkv0 type macvlan mode bridge",
        "macvlan underlays (networks.<name>.driver)",
    ),
    "ipip": ("ip link add lkip0 type ipip local 10.0.0.1 remote 10.0.0.2", "IPIP tunnels"),
    "gre": ("ip link add lkgre0 type gre local 10.0.0.1 remote 10.0.0.2", "GRE tunnels"),
    "wireguard": ("ip link add lkwg0 type wireguard", "WireGuard"),
    "packet_socket": (
        'python3 -c "import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)"',
        "gratuitous ARP (LoadBalancer L2 mode)",
    ),
    # A socket of the protocol: the kernel has SCTP (a module a container cannot load).
    "sctp": (
        'python3 -c "import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132)"',
        "SCTP services",
    ),
}


def _probe_script() -> str:
    lines = []
    for name, (test, _) in PROBES.items():
        # Each probe in a namespace of its own, so leftovers do not matter.
        lines.append(
            f"ip netns add lk-{name} && "
            f"if ip netns exec lk-{name} sh -c '{test}' >/tmp/p 2>&1; "
            f"then echo '{name} ok'; else echo \"{name} no $(tail -c 160 /tmp/p | tr '\\n' ' ')\"; fi; "
            f"ip netns del lk-{name}"
        )
    return "\n".join(lines)


def _cache_file(kernel: str) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "labkit"
    # Keyed by the probes too: changing a probe must not reuse an old answer.
    probes = hashlib.sha256(json.dumps(PROBES, sort_keys=True).encode()).hexdigest()[:8]
    return root / f"features-{kernel}-{probes}.json"


@cache
def kernel_features() -> dict[str, dict[str, Any]]:
    """{feature: {"ok": bool, "detail": str, "needed_by": str}}, cached per kernel."""
    from labkit.runtime.docker import LAB_LABEL, DockerRuntime, engine_identity
    from labkit.runtime.images import node_image

    runtime = DockerRuntime()
    kernel = engine_identity(runtime.client)[1]
    cached = _cache_file(kernel)
    if cached.exists():
        return dict(json.loads(cached.read_text()))
    image = node_image(runtime.client)
    mode = runtime.node_mode(image)
    container = runtime.client.containers.run(
        image, ["sleep", "60"], detach=True, remove=True, network_mode="none",
        privileged=mode.privileged,
        cap_add=None if mode.privileged else ["NET_ADMIN", "SYS_ADMIN", "NET_RAW"],
        security_opt=None if mode.privileged else ["seccomp=unconfined", "apparmor=unconfined"],
        devices=None if mode.privileged else ["/dev/net/tun:/dev/net/tun:rwm"],
        labels={LAB_LABEL: "probe"},
    )  # fmt: skip
    try:
        output = runtime.exec(str(container.name), _probe_script(), check=False, timeout=60).stdout
    finally:
        container.remove(force=True)
    result: dict[str, dict[str, Any]] = {}
    for line in output.splitlines():
        name, _, rest = line.partition(" ")
        ok = rest.startswith("ok")
        detail = "" if ok else rest[3:].strip()
        result[name] = {"ok": ok, "detail": detail, "needed_by": PROBES[name][1]}
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(result, indent=2))
    return result


def kernel_features_on(runtime: Any, image: str) -> dict[str, dict[str, Any]]:
    """The same probes on another engine (`labkit hosts check`), uncached."""
    output = runtime.run_throwaway(image, _probe_script(), timeout=60)
    result = {}
    for line in output.splitlines():
        name, _, rest = line.partition(" ")
        if name in PROBES:
            ok = rest.startswith("ok")
            result[name] = {
                "ok": ok,
                "detail": "" if ok else rest[3:].strip(),
                "needed_by": PROBES[name][1],
            }
    return result


# Features of the engine's host rather than its kernel, probed with throwaway
# containers once per process (a host's firewall changes, its kernel does not).
ENGINE_PROBES: dict[str, str] = {"l2-underlay": "backends host-gw and bgp, routed underlays"}


@cache
def engine_features() -> dict[str, dict[str, Any]]:
    from labkit.runtime.underlay_probe import probe_l2_underlay

    ok, detail = probe_l2_underlay()
    return {"l2-underlay": {"ok": ok, "detail": detail, "needed_by": ENGINE_PROBES["l2-underlay"]}}


def has(feature: str) -> bool:
    table = engine_features() if feature in ENGINE_PROBES else kernel_features()
    return bool(table.get(feature, {}).get("ok"))


def missing_reason(feature: str) -> str:
    if feature in ENGINE_PROBES:
        return f"the engine's host {engine_features()[feature]['detail']}"
    detail = kernel_features().get(feature, {}).get("detail", "not probed")
    return f"the host kernel lacks {feature} ({detail or 'probe failed'})"


def require(feature: str, what: str) -> None:
    """Fail before anything is created when `what` needs a feature the host lacks."""
    if not has(feature):
        raise FeatureMissing(f"{what} needs {feature}, but {missing_reason(feature)}")


def diagnose() -> dict[str, Any]:
    """What `labkit doctor` prints."""
    from labkit.runtime.docker import DockerRuntime
    from labkit.runtime.images import node_image

    runtime = DockerRuntime()
    info = runtime.client.info()
    image = node_image(runtime.client)
    mode = runtime.node_mode(image)
    return {
        "engine": f"Docker {info.get('ServerVersion')} ({info.get('OperatingSystem')})",
        "kernel": info.get("KernelVersion"),
        "node image": image,
        "node mode": ("privileged" if mode.privileged else "capabilities") + f": {mode.reason}",
        "kernel features": kernel_features(),
        "engine features": engine_features(),
    }
