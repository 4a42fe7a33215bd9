"""Pods: a network namespace per pod wired by the CNI reference plugins, and
the pod's "containers" as processes started inside that namespace.

The namespace plays the pause container: killing a pod's process never takes
its IP away.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from labkit.dataplane.script import batch, q, script, sysctl_lines, write_file
from labkit.topology.cluster_model import CniPlugin
from labkit.topology.model import key_name, slug

CONFLIST_PATH = "/etc/cni/net.d/10-labkit.conflist"
BRIDGE = "cni0"
POD_IFNAME = "eth0"
STATE_DIR = "/var/lib/labkit/pods"
LOG_DIR = "/var/log/labkit/pods"
CNI_CACHE_DIR = "/var/lib/labkit/cni"  # labkit-cni's ADD results (images/node/labkit-cni.py)
# Destination-unreachable (type 3) out of the ICMP rate mask, so no per-peer or
# global bucket slows the errors that tell a client "denied" or "refused".
NO_ICMP_ERROR_LIMITS = {"net.ipv4.icmp_ratemask": 6160, "net.ipv4.icmp_ratelimit": 0}
NO_ICMP_ERROR_LIMIT = "sysctl -qw " + " ".join(f"{k}={v}" for k, v in NO_ICMP_ERROR_LIMITS.items())


@dataclass(frozen=True)
class PodSpec:
    """What a node needs to know to run one pod (`name`: its key, `NS/NAME` outside default)."""

    name: str
    node: str
    namespace: str
    ip: IPv4Address
    commands: tuple[str, ...] = ()
    port_mappings: tuple[dict[str, object], ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    host_network: bool = False  # runs in the node's own namespace: no netns, no CNI

    def containers(self) -> dict[str, str]:
        return container_names(self.commands)

    @property
    def netns(self) -> str:
        """The network namespace (and state/log directory) name: safe for paths."""
        return slug(self.name)


def conflist(subnet: IPv4Network, mtu: int, plugin: CniPlugin = "bridge") -> dict[str, object]:
    """The node's CNI network: bridge (or ptp) + host-local IPAM, then portmap for host ports."""
    ipam = {
        "type": "host-local",
        "ranges": [[{"subnet": str(subnet), "gateway": str(subnet.network_address + 1)}]],
        "routes": [{"dst": "0.0.0.0/0"}],
    }
    if plugin == "ptp":
        # The pod's veth gets a /32 route on the node, its peer the gateway address.
        main: dict[str, object] = {"type": "ptp", "ipMasq": False, "mtu": mtu, "ipam": ipam}
    else:
        main = {
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": True,
            "ipMasq": False,  # pod-to-pod traffic keeps the pod's own source IP
            "hairpinMode": True,  # a pod may reach itself through its service
            "mtu": mtu,
            "ipam": ipam,
        }
    portmap = {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}
    return {"cniVersion": "1.0.0", "name": "labkit", "plugins": [main, portmap]}


def node_setup_script(subnet: IPv4Network, mtu: int, plugin: CniPlugin = "bridge") -> str:
    """Per node, before any pod: the CNI config and the kernel knobs pods rely on
    (one mkdir, the knobs by the shell: each process a node script starts costs 1-2 ms)."""
    # The node sends the ICMP errors of policy REJECTs: unlimited, so that
    # back-to-back denials all fail at once (the kernel allows 6, then 1/s).
    knobs: dict[str, object] = {"net.ipv4.ip_forward": 1, **NO_ICMP_ERROR_LIMITS}
    if plugin == "bridge":
        # Bridged pod traffic must traverse netfilter, or a pod calling a
        # service whose endpoint is on the same bridge is never DNATed back.
        knobs["net.bridge.bridge-nf-call-iptables"] = 1
    lines = [
        f"mkdir -p {posixpath.dirname(CONFLIST_PATH)} {STATE_DIR} {LOG_DIR}",
        write_file(CONFLIST_PATH, json.dumps(conflist(subnet, mtu, plugin), indent=2)),
        *sysctl_lines(knobs),
    ]
    if plugin != "bridge":
        # No bridge holds the block: an address no pod has is refused here, as
        # Calico's blackhole does, instead of following the default route out.
        lines.append(f"ip route replace unreachable {subnet}")
    return script(lines)


def container_names(commands: tuple[str, ...] | list[str]) -> dict[str, str]:
    """A name per command: the program's base name, numbered when it repeats."""
    names: dict[str, str] = {}
    for index, command in enumerate(commands):
        words = command.split()
        base = posixpath.basename(words[0]) if words else f"c{index}"
        name = base if base not in names else f"{base}-{index}"
        names[name] = command
    return names


def pod_mac(ip: IPv4Address) -> str:
    """The pod's MAC, from its IP (as OVN-Kubernetes does): a pod that comes back with
    its IP (sticky, pinned) keeps its MAC, so no neighbour cache on the bridge goes stale."""
    return "0a:58:" + ":".join(f"{byte:02x}" for byte in ip.packed)


def pod_add_script(pod: PodSpec) -> str:
    """Create the pod's namespace, wire it through CNI, start its containers."""
    return pods_add_script([pod])


def pods_add_script(pods: Sequence[PodSpec]) -> str:
    """Create the pods' namespaces, wire them through CNI in one labkit-cni process
    (a Python start per pod was most of a pod's cost at up; issue 14), start their
    containers. Prints `labkit-time pod <name> <ns>` per pod wired.

    Idempotent: an earlier incarnation goes first. After a node container's
    stop/start, /var/run/netns/<pod> files remain without their mounts and
    host-local still holds the pod's IP: `ip netns del` removes such a file,
    then CNI DEL (no netns left) releases the IP.
    """
    lines = [kill_containers_script(pod.name) for pod in pods]
    wired = [pod for pod in pods if not pod.host_network]
    for pod in wired:
        ns = q(pod.netns)
        lines += [
            # Only an earlier incarnation has a namespace file, or an ADD result cached
            # to undo: a fresh pod starts no process for either (issue 14).
            f"[ ! -e /var/run/netns/{pod.netns} ] || ip netns del {ns} 2>/dev/null || true",
            f"[ ! -e {CNI_CACHE_DIR}/{pod.netns}.json ] || "
            f"labkit-cni del {ns} /var/run/netns/{pod.netns} >/dev/null 2>&1 || true",
        ]
    if wired:
        # One `ip` for every namespace; labkit-cni brings lo up (the loopback plugin).
        # A closed UDP port answers with ICMP port unreachable: never slowed.
        namespaces = [q(pod.netns) for pod in wired]
        lines.append(
            batch("ip", [f"netns add {ns}" for ns in namespaces]
                  + [f"netns exec {ns} {NO_ICMP_ERROR_LIMIT}" for ns in namespaces])
        )  # fmt: skip
        entries = "\n".join(json.dumps(_cni_entry(pod), sort_keys=True) for pod in wired)
        lines.append(f"labkit-cni add-all <<'LABKIT_PODS'\n{entries}\nLABKIT_PODS")
    lines.append(_start_pods_script(pods))
    return script(lines)


def _cni_entry(pod: PodSpec) -> dict[str, object]:
    """One line of `labkit-cni add-all`: the pod's CNI args, its result file."""
    entry: dict[str, object] = {
        "pod": pod.netns,
        "name": pod.name,
        "netns": f"/var/run/netns/{pod.netns}",
        "args": (
            f"IgnoreUnknown=1;IP={pod.ip};K8S_POD_NAME={key_name(pod.name)}"
            f";K8S_POD_NAMESPACE={pod.namespace};MAC={pod_mac(pod.ip)}"
        ),
        "out": f"{STATE_DIR}/{pod.netns}.cni.json",
    }
    if pod.port_mappings:
        entry["capArgs"] = {"portMappings": list(pod.port_mappings)}
    return entry


def start_containers_script(pod: PodSpec, only: str | None = None) -> str:
    """Start the pod's processes in its namespace, detached, output to log files.

    Each runs in its own session so that it can be killed as a group; its pid
    is kept in STATE_DIR/<pod>/<container>.pid.
    """
    return _start_pods_script([pod], only)


def _start_pods_script(pods: Sequence[PodSpec], only: str | None = None) -> str:
    """Every pod's processes started side by side, each pid file written as it starts
    (no wait for the process to write it: a 10 ms sleep per node at up, issue 14)."""
    dirs = [f"{root}/{pod.netns}" for pod in pods for root in (STATE_DIR, LOG_DIR)]
    lines = [f"mkdir -p {' '.join(dirs)}"] if dirs else []
    for pod in pods:
        lines += _container_starts(pod, only)
    return "\n".join(lines)


def _container_starts(pod: PodSpec, only: str | None) -> list[str]:
    """The line that starts each container of the pod (`only`: one), its pid file
    written as it starts."""
    env = {
        "POD_NAME": key_name(pod.name),
        "POD_NAMESPACE": pod.namespace,
        "POD_IP": str(pod.ip),
        "NODE_NAME": pod.node,
        **pod.env,
        "LABKIT_POD": pod.name,  # whose process this is (`_runs_for`)
    }
    env_words = " ".join(q(f"{key}={value}") for key, value in env.items())
    enter = "" if pod.host_network else f"ip netns exec {q(pod.netns)} "
    starts = []
    for name, command in pod.containers().items():
        if only is not None and name != only:
            continue
        pidfile = f"{STATE_DIR}/{pod.netns}/{name}.pid"
        inner = f'exec {enter}env {env_words} sh -c "$0"'
        # In the background, setsid does not fork (it leads no process group): $! is
        # the session, the group to kill. LABKIT_POD in its environment on (an
        # assignment, no `env`): the process counts as the pod's (`_runs_for`).
        starts.append(
            f"LABKIT_POD={q(pod.name)} setsid sh -c {q(inner)} {q(command)} "
            f">> {LOG_DIR}/{pod.netns}/{name}.log 2>&1 < /dev/null & echo $! > {pidfile}"
        )
    return starts


def kill_containers_script(
    pod_name: str, container: str | None = None, signal: str = "KILL"
) -> str:
    """Kill a pod's processes (one container or all); the namespace stays.

    The pid files stay too, so the pod shows its containers as down.
    """
    pattern = f"{STATE_DIR}/{slug(pod_name)}/{container or '*'}.pid"
    return (
        f'for f in {pattern}; do [ -f "$f" ] || continue; {_READ_PID} '
        f"{_runs_for(pod_name)} && kill -{signal} -$p 2>/dev/null || true; done"
    )


# Shell builtins, as the rest of the pid file loops: at up every pod's readiness runs
# them, and each process a node script starts costs 1-2 ms of CPU (issue 14).
_READ_PID = 'p=; read -r p < "$f" || :;'


def _runs_for(pod_name: str) -> str:
    """Shell: the process $p is this pod's (its LABKIT_POD). A pid file outlives its node
    container's restart, and the new boot reuses pids: without this a pod's restart could
    kill another pod's process, and a dead container could look alive. (grep -z reads
    the NUL-separated environment as lines.)"""
    return f"grep -qzxF {q('LABKIT_POD=' + pod_name)} /proc/$p/environ 2>/dev/null"


def containers_alive_script(pod_name: str) -> str:
    """Prints `<container> up|down` per container of the pod."""
    return (
        f'for f in {STATE_DIR}/{slug(pod_name)}/*.pid; do [ -f "$f" ] || continue; '
        f"n=${{f##*/}}; n=${{n%.pid}}; {_READ_PID} "
        f'if kill -0 $p 2>/dev/null && {_runs_for(pod_name)}; then echo "$n up"; '
        'else echo "$n down"; fi; done'
    )


def pod_delete_script(pod_name: str) -> str:
    """Stop the pod's processes, release its CNI wiring, delete its namespace."""
    ns, netns = q(slug(pod_name)), slug(pod_name)
    return "\n".join(
        [
            kill_containers_script(pod_name),
            f"labkit-cni del {ns} /var/run/netns/{netns} >/dev/null 2>&1 || true",
            f"ip netns del {ns} 2>/dev/null || true",
            f"rm -rf {STATE_DIR}/{netns} {STATE_DIR}/{netns}.cni.json",
        ]
    )
