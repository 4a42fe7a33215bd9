"""What `labkit bench paths` holds the pod paths against, and the pieces it takes away.

References, measured in the same run as each lab (issue 14):

- `veth`: two bare network namespaces joined by one veth pair at the underlay MTU;
- `bare-vxlan`: kernel VXLAN (flannel's VNI and port, learning off) between those
  two namespaces over that veth, at the underlay MTU less VXLAN's 50 bytes: the
  physical limit of a VXLAN pod path, with nothing of labkit or Docker in it.

Both live in a throwaway container of the lab (same image and privileges as a
node, no network at all), so `lab.down()` removes it with the rest.

Paths inside the lab with parts of a pod's path missing:

- `node-vxlan`: node to node through flannel.1 (no pod veth, no CNI bridge);
- `direct`: a Calico-style namespace on each node, a veth with a /32 route and
  proxy ARP and no bridge, across the backend like the pods.

And pieces changed on every cluster node for a few runs, then put back
(`Piece`): bridge netfilter, conntrack, GRO on the veths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address

from tenacity import retry, retry_if_exception_type, stop_after_attempt

from labkit import expect
from labkit.core import probes
from labkit.core.endpoint import Endpoint
from labkit.dataplane import backends, vxlan
from labkit.dataplane.script import q, script
from labkit.errors import LabkitError
from labkit.lab import Lab
from labkit.runtime.base import ExecResult, Runtime

BARE_NODE = "bare-kernel"
# RFC 2544's benchmarking range: the namespaces have no route anywhere else.
VETH_IPS = (IPv4Address("198.18.0.1"), IPv4Address("198.18.0.2"))
VXLAN_IPS = (IPv4Address("198.18.1.1"), IPv4Address("198.18.1.2"))
DIRECT_NS = "bench-direct"
DIRECT_HOST_IF = "bd-host"
DIRECT_HOST_OFFSET = 250  # inside each node's pod subnet; the bench adds no pods
GATEWAY = "169.254.1.1"  # Calico's: answered by proxy ARP on the host's veth
PRIORITY = -10  # measuring processes weigh ~9x a normal one on a shared host


def bare_script(underlay_mtu: int) -> str:
    """Namespaces bare-a and bare-b: a veth between them, kernel VXLAN over it."""
    (veth_a, veth_b), (vx_a, vx_b) = VETH_IPS, VXLAN_IPS
    lines = []
    for ns in ("bare-a", "bare-b"):
        lines += [f"ip netns del {ns} 2>/dev/null || true", f"ip netns add {ns}"]
        lines.append(f"ip -n {ns} link set lo up")
    lines.append(
        f"ip link add veth0 netns bare-a mtu {underlay_mtu} type veth "
        f"peer name veth0 netns bare-b mtu {underlay_mtu}"
    )
    for ns, own, peer, own_vx in (
        ("bare-a", veth_a, veth_b, vx_a),
        ("bare-b", veth_b, veth_a, vx_b),
    ):
        lines += [
            f"ip -n {ns} addr add {own}/24 dev veth0",
            f"ip -n {ns} link set veth0 up",
            f"ip -n {ns} link add {vxlan.DEVICE} type vxlan id {vxlan.VNI} local {own} "
            f"remote {peer} dev veth0 dstport {vxlan.PORT} nolearning",
            f"ip -n {ns} link set {vxlan.DEVICE} mtu {underlay_mtu - vxlan.OVERHEAD} up",
            f"ip -n {ns} addr add {own_vx}/24 dev {vxlan.DEVICE}",
        ]
    return script(lines)


def direct_script(address: IPv4Address, mtu: int) -> str:
    """A pod without a bridge: its veth routed by a /32, the gateway by proxy ARP."""
    ns = DIRECT_NS
    return script(
        [
            f"ip netns del {ns} 2>/dev/null || true",
            f"ip link del {DIRECT_HOST_IF} 2>/dev/null || true",
            f"ip netns add {ns}",
            f"ip -n {ns} link set lo up",
            f"ip link add {DIRECT_HOST_IF} mtu {mtu} type veth peer name eth0 netns {ns} mtu {mtu}",
            f"echo 1 > /proc/sys/net/ipv4/conf/{DIRECT_HOST_IF}/proxy_arp",
            f"ip link set {DIRECT_HOST_IF} up",
            f"ip -n {ns} addr add {address}/32 dev eth0",
            f"ip -n {ns} link set eth0 up",
            f"ip -n {ns} route add {GATEWAY} dev eth0 scope link",
            f"ip -n {ns} route add default via {GATEWAY} dev eth0",
            f"ip route replace {address}/32 dev {DIRECT_HOST_IF}",
            # Proxy ARP answers for an address the node routes elsewhere: a node on a
            # macvlan underlay has no default route to do it.
            f"ip route replace {GATEWAY}/32 dev lo",
        ]
    )


# -- endpoints ----------------------------------------------------------------------


@dataclass
class Container:
    """A container the bench made itself (the bare one), as something to exec in."""

    runtime: Runtime
    container: str

    def exec(self, command: str, *, check: bool = True, timeout: float | None = None) -> ExecResult:
        return self.runtime.exec(self.container, command, check=check, timeout=timeout)


@dataclass
class InNamespace:
    """An endpoint in a named network namespace of a container."""

    name: str
    host: Container | Endpoint
    namespace: str
    address: IPv4Address

    @property
    def ip(self) -> IPv4Address:
        return self.address

    def exec(self, command: str, *, check: bool = True, timeout: float | None = None) -> ExecResult:
        wrapped = f"ip netns exec {q(self.namespace)} sh -c {q(command)}"
        return self.host.exec(wrapped, check=check, timeout=timeout)


@dataclass
class Prioritized:
    """`endpoint`, its commands run at `PRIORITY`: other work on a shared host skews
    the figures less (CFS still runs it: a few seconds at a time, never starved)."""

    endpoint: Endpoint
    ip_override: IPv4Address | None = None
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.endpoint.name

    @property
    def ip(self) -> IPv4Address:
        return self.ip_override or self.endpoint.ip

    def exec(self, command: str, *, check: bool = True, timeout: float | None = None) -> ExecResult:
        return self.endpoint.exec(
            f"nice -n {PRIORITY} sh -c {q(command)}", check=check, timeout=timeout
        )


def bare_endpoints(runtime: Runtime, container: str) -> dict[str, tuple[Endpoint, Endpoint]]:
    """(client, server) of the references, in the bare container."""
    host = Container(runtime, container)

    def pair(ips: tuple[IPv4Address, IPv4Address], path: str) -> tuple[Endpoint, Endpoint]:
        a = InNamespace(f"{path}-a", host, "bare-a", ips[0])
        b = InNamespace(f"{path}-b", host, "bare-b", ips[1])
        return Prioritized(a), Prioritized(b)

    return {"veth": pair(VETH_IPS, "veth"), "bare-vxlan": pair(VXLAN_IPS, "bare-vxlan")}


# -- pieces ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """A change to every cluster node for some runs: `apply`, measure, `revert`."""

    name: str
    what: str
    apply: str
    revert: str


def _gro(state: str) -> str:
    """GRO on every veth of the node and in every pod's namespace."""
    veths = "ip -o link show type veth | awk -F'[ :@]+' '{print $2}'"
    return (
        f"for d in $({veths}); do ethtool -K $d gro {state} 2>/dev/null || true; done; "
        "for n in $(ip netns list | awk '{print $1}'); do "
        f"ip netns exec $n ethtool -K eth0 gro {state} 2>/dev/null || true; done"
    )


_NOTRACK = ("PREROUTING", "OUTPUT")

PIECES = (
    Piece(
        "no bridge netfilter",
        "net.bridge.bridge-nf-call-iptables=0 on the nodes: bridged frames skip iptables",
        "sysctl -qw net.bridge.bridge-nf-call-iptables=0",
        "sysctl -qw net.bridge.bridge-nf-call-iptables=1",
    ),
    Piece(
        "no conntrack",
        "NOTRACK first in the nodes' raw table: no connection tracking on them",
        "; ".join(f"iptables -w -t raw -I {chain} 1 -j NOTRACK" for chain in _NOTRACK),
        "; ".join(f"iptables -w -t raw -D {chain} -j NOTRACK" for chain in _NOTRACK),
    ),
    Piece("veth GRO on", "GRO on every veth of the nodes and pods (off by default)", _gro("on"),
          _gro("off")),
)  # fmt: skip


def measure_tcp(client: Endpoint, server: Endpoint, seconds: float, port: int) -> dict[str, float]:
    """TCP with 1 and 4 streams, Gbit/s."""
    found = {}
    for streams in (1, 4):
        run = _iperf_once_more(client, server, seconds, streams, port)
        found[f"tcp{streams}_gbit_s"] = run.gbit_per_s
        found[f"tcp{streams}_gbit_per_cpu_s"] = per_cpu_second(run)
    return found


def per_cpu_second(run: probes.IperfResult) -> float:
    """Gbit per CPU-second that the sender and the receiver spent (user + system).

    With no IRQ time accounting (this kernel's case) the softirq work a veth path
    does on the sender's and receiver's behalf counts as their system time, so
    this is the path's cost per bit: it holds when other work takes CPUs from the
    run, where Gbit/s do not. Softirqs left to ksoftirqd are missed (it flatters).
    """
    cpu = run.raw.get("end", {}).get("cpu_utilization_percent", {})
    used = (cpu.get("host_total", 0.0) + cpu.get("remote_total", 0.0)) / 100
    return run.gbit_per_s / used if used > 0 else 0.0


@retry(retry=retry_if_exception_type(LabkitError), stop=stop_after_attempt(2), reraise=True)
def _iperf_once_more(
    client: Endpoint, server: Endpoint, seconds: float, streams: int, port: int
) -> probes.IperfResult:
    """One run; a run that a starved host broke (no JSON, killed) is tried once more."""
    # The last run's one-off server may still hold the port (4 streams close slowly).
    expect.eventually(lambda: _port_free(server, port), within=10, every=0.1, what="iperf3 gone")
    return probes.iperf(client, server, seconds=seconds, streams=streams, port=port)


def _port_free(server: Endpoint, port: int) -> None:
    assert not server.exec(f"ss -Hltn sport = :{port}").stdout.strip()


def references(lab: Lab, backend: str) -> dict[str, tuple[Endpoint, Endpoint]]:
    """(client, server) of every reference and partial path of a bench lab (node-1, node-2)."""
    topology, runtime = lab.topology, lab.runtime
    cluster = lab.cluster
    container = runtime.create_node(lab.name, BARE_NODE, cluster.image, {}, cluster.owner)
    runtime.exec(container, bare_script(backends.underlay_mtu(topology)))
    found = bare_endpoints(runtime, container)
    subnets, pod_mtu = lab.addresses.pod_subnets, backends.pod_mtu(topology)
    direct: list[Endpoint] = []
    for name in ("node-1", "node-2"):
        node = lab.node(name)
        address = subnets[name].network_address + DIRECT_HOST_OFFSET
        node.exec(direct_script(address, pod_mtu))
        direct.append(Prioritized(InNamespace(f"direct-{name}", node, DIRECT_NS, address)))
    found["direct"] = (direct[0], direct[1])
    if backend == "vxlan":  # node-2's VTEP address: reached through flannel.1, no pod in the way
        vtep = subnets["node-2"].network_address
        found["node-vxlan"] = (
            Prioritized(lab.node("node-1")),
            Prioritized(lab.node("node-2"), vtep),
        )
    return found


def change(lab: Lab, script_text: str) -> None:
    """Run a piece's script on every cluster node."""
    for name in lab.topology.member_nodes():
        lab.node(name).exec(script_text)
