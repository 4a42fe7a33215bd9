"""kube-proxy's IPVS mode, rendered as one shell payload per sync. Pure.

What a node holds, as kube-proxy's IPVS mode lays it out:

  - every service VIP bound to the dummy device `kube-ipvs0` (left down, as
    kube-proxy does: the addresses are local all the same), so packets to a
    VIP are delivered locally, where IPVS picks them up;
  - one IPVS virtual server per VIP:port/proto of a service port with
    endpoints, and one per node address and node port (`$a` below: the node's
    addresses are read on the node, as kube-proxy reads them), scheduler rr,
    `-p <timeout>` for ClientIP affinity, real servers = the endpoints with
    masquerading (`-m`), loaded with one `ipvsadm -R` (restore);
  - iptables around it (no ipset: one rule per VIP, endpoint or node port):
    nat KUBE-SERVICES marks traffic from outside the pod CIDR for masquerade,
    KUBE-NODE-PORT marks node-port traffic, KUBE-POSTROUTING masquerades the
    marked traffic and the hairpin case (an endpoint reaching itself); filter
    KUBE-SERVICES (from INPUT: VIPs are local) rejects service ports without
    endpoints at once;
  - net.ipv4.vs.conntrack=1, so IPVS traffic goes through conntrack and the nat
    table's masquerading (kube-proxy sets it, with expire_nodest_conn and
    expire_quiescent_template, so flows to a removed endpoint or affinity to it end).

A full payload clears the IPVS table and the device and writes everything; a
partial one (kube-proxy's incremental sync) adds, edits and deletes just the
virtual and real servers and VIPs that differ between two plans. The iptables
part is small and rewritten whole every time (kube-proxy's IPVS mode does so too).
"""

from __future__ import annotations

from dataclasses import dataclass

from labkit.dataplane import kubeproxy_iptables as ipt
from labkit.dataplane.kubeproxy import ProxyPlan, ServicePortPlan
from labkit.dataplane.kubeproxy_iptables import comment

DEVICE = "kube-ipvs0"
SCHEDULER = "rr"
SYSCTLS = (
    "net.ipv4.vs.conntrack=1",
    "net.ipv4.vs.expire_nodest_conn=1",
    "net.ipv4.vs.expire_quiescent_template=1",
)
NODE_ADDRESS = "$a"  # stands for each node address in the node-port loop
# The node's addresses node ports listen on: every global IPv4 address but the
# VIPs (kube-ipvs0) and the cluster DNS's (on lo).
NODE_ADDRESSES = (
    "ip -4 -o addr show scope global "
    f'| awk \'$2 != "{DEVICE}" && $2 != "lo" {{sub("/.*", "", $4); print $4}}\''
)

# (table, built-in chain, rule spec): the jumps into labkit's chains.
HOOKS: tuple[tuple[str, str, str], ...] = (
    ("nat", "PREROUTING", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "OUTPUT", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "POSTROUTING", '-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'),
    ("filter", "INPUT", "-m conntrack --ctstate NEW -m comment --comment "
     '"kubernetes service portals" -j KUBE-SERVICES'),
    ("filter", "FORWARD", '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD'),
)  # fmt: skip
FILTER_CHAINS = ("KUBE-SERVICES", "KUBE-FORWARD")
NAT_CHAINS = ("KUBE-SERVICES", "KUBE-NODE-PORT", "KUBE-POSTROUTING", "KUBE-MARK-MASQ")

_IPVS_EOF = "LABKIT_IPVS_EOF"
_NODEPORT_EOF = "LABKIT_IPVS_NODEPORT_EOF"
_IP_EOF = "LABKIT_IPVS_ADDR_EOF"
_IPTABLES_EOF = "LABKIT_IPVS_IPTABLES_EOF"


@dataclass(frozen=True)
class VirtualServer:
    """An IPVS virtual service: `-t|-u address:port`, its persistence and real servers."""

    flag: str  # -t | -u
    address: str  # an IP, or NODE_ADDRESS for a node port
    port: int
    persistence: int | None
    reals: tuple[str, ...]  # ip:port

    @property
    def key(self) -> str:
        return f"{self.flag} {self.address}:{self.port}"

    def service_options(self) -> str:
        persistent = f" -p {self.persistence}" if self.persistence is not None else ""
        return f"-s {SCHEDULER}{persistent}"

    def add_lines(self) -> list[str]:
        """What `ipvsadm-save -n` prints for it (and `ipvsadm -R` reads)."""
        return [f"-A {self.key} {self.service_options()}", *map(self.real_line, self.reals)]

    def real_line(self, real: str) -> str:
        return f"-a {self.key} -r {real} -m -w 1"


def virtual_servers(plan: ProxyPlan) -> dict[str, VirtualServer]:
    """Every virtual server the plan asks for (service ports with endpoints), by key."""
    found: dict[str, VirtualServer] = {}
    for service in plan.services:
        if not service.endpoints:
            continue  # refused by the filter table instead, as in the iptables mode
        flag = "-t" if service.proto == "tcp" else "-u"
        reals = tuple(e.address for e in service.endpoints)
        wanted = [(str(service.vip), service.port)]
        if service.node_port is not None:
            wanted.append((NODE_ADDRESS, service.node_port))
        for address, port in wanted:
            server = VirtualServer(flag, address, port, service.affinity_seconds, reals)
            found[server.key] = server
    return found


def vips(plan: ProxyPlan) -> list[str]:
    """The addresses bound to kube-ipvs0: every service's VIP (also without endpoints)."""
    return [str(vip) for vip in sorted({s.vip for s in plan.services})]


# -- IPVS commands ----------------------------------------------------------------------


def _full_commands(plan: ProxyPlan) -> list[str]:
    return [line for server in virtual_servers(plan).values() for line in server.add_lines()]


def _partial_commands(old: ProxyPlan, new: ProxyPlan) -> list[str]:
    """kube-proxy's incremental sync: only the virtual and real servers that differ."""
    before, after = virtual_servers(old), virtual_servers(new)
    lines = [f"-D {key}" for key in before if key not in after]
    for key, server in after.items():
        previous = before.get(key)
        if previous is None:
            lines += server.add_lines()
            continue
        if previous.persistence != server.persistence:
            lines.append(f"-E {key} {server.service_options()}")
        lines += [f"-d {key} -r {real}" for real in previous.reals if real not in server.reals]
        lines += [server.real_line(real) for real in server.reals if real not in previous.reals]
    return lines


def _ipvs_restore(commands: list[str]) -> list[str]:
    """Feed the commands to one `ipvsadm -R`, node-port ones once per node address."""
    cluster = [c for c in commands if f" {NODE_ADDRESS}:" not in c]
    node = [c for c in commands if f" {NODE_ADDRESS}:" in c]
    if not commands:
        return []
    lines = ["{"]
    if cluster:
        lines += [f"cat <<'{_IPVS_EOF}'", *cluster, _IPVS_EOF]
    if node:
        # Unquoted: $a expands; the rest is addresses, ports and flags only.
        lines += [
            f"for a in $({NODE_ADDRESSES}); do",
            f"cat <<{_NODEPORT_EOF}",
            *node,
            _NODEPORT_EOF,
            "done",
        ]
    # `ipvsadm -R`, not Debian's `ipvsadm-restore`: that one clears the table first.
    lines.append("} | ipvsadm -R")
    return lines


def _addresses(commands: list[str]) -> list[str]:
    if not commands:
        return []
    return [f"ip -batch - <<'{_IP_EOF}'", *commands, _IP_EOF]


# -- iptables ---------------------------------------------------------------------------------


def _dport(service: ServicePortPlan, port: int) -> str:
    return f"-p {service.proto} -m {service.proto} --dport {port}"


def _filter_section(plan: ProxyPlan) -> list[str]:
    lines = ["*filter", *(f":{chain} - [0:0]" for chain in FILTER_CHAINS)]
    for service in plan.services:
        if service.endpoints:
            continue
        note = comment(f"{service.name} has no endpoints")
        reject = "-j REJECT --reject-with icmp-port-unreachable"
        lines.append(
            f"-A KUBE-SERVICES -d {service.vip}/32 {_dport(service, service.port)} {note} {reject}"
        )
        if service.node_port is not None:
            lines.append(
                f"-A KUBE-SERVICES -m addrtype --dst-type LOCAL "
                f"{_dport(service, service.node_port)} {note} {reject}"
            )
    return lines + ipt.forward_rules()


def _nat_section(plan: ProxyPlan) -> list[str]:
    lines = ["*nat", *(f":{chain} - [0:0]" for chain in NAT_CHAINS)]
    served = [s for s in plan.services if s.endpoints]
    # Hairpin: an endpoint reached through its own service must not see itself as the source.
    hairpins = sorted({(e.ip, s.proto, e.port) for s in served for e in s.endpoints})
    for ip, proto, port in hairpins:
        lines.append(
            f"-A KUBE-POSTROUTING -s {ip}/32 -d {ip}/32 -p {proto} -m {proto} --dport {port} "
            f"{comment('hairpin: endpoint reaching itself through a service')} -j MASQUERADE"
        )
    lines += ipt.masquerade_rules()
    cidr = plan.cluster_cidr
    for service in served:
        lines.append(
            f"-A KUBE-SERVICES ! -s {cidr} -d {service.vip}/32 {_dport(service, service.port)} "
            f"{comment(f'{service.name} cluster IP')} -j KUBE-MARK-MASQ"
        )
    lines.append("-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT")
    # Stop here for VIPs (local addresses now): no later nat rule (hostPort DNAT) may take them.
    for service in served:
        lines.append(
            f"-A KUBE-SERVICES -d {service.vip}/32 {_dport(service, service.port)} "
            f"{comment(f'{service.name} cluster IP')} -j ACCEPT"
        )
    for service in served:
        if service.node_port is not None:
            lines.append(
                f"-A KUBE-NODE-PORT {_dport(service, service.node_port)} "
                f"{comment(service.name)} -j KUBE-MARK-MASQ"
            )
    lines.append("COMMIT")
    return lines


def _iptables(plan: ProxyPlan, iptables: str) -> list[str]:
    return [
        f"{iptables}-restore --noflush <<'{_IPTABLES_EOF}'",
        *_filter_section(plan),
        *_nat_section(plan),
        _IPTABLES_EOF,
    ]


# -- payloads ----------------------------------------------------------------------------------


def _setup() -> list[str]:
    return [
        f"sysctl -qw {' '.join(SYSCTLS)}",
        f"ip link show {DEVICE} >/dev/null 2>&1 || ip link add {DEVICE} type dummy",
    ]


def render_full(plan: ProxyPlan, iptables: str = "iptables") -> str:
    """Everything, from a clean IPVS table and device."""
    lines = ["# labkit: kube-proxy's IPVS mode, full sync", *_setup()]
    lines += [f"ip addr flush dev {DEVICE}"]
    lines += _addresses([f"addr replace {vip}/32 dev {DEVICE}" for vip in vips(plan)])
    lines += ["ipvsadm -C", *_ipvs_restore(_full_commands(plan))]
    lines += _iptables(plan, iptables)
    return "\n".join(lines) + "\n"


def render_partial(old: ProxyPlan, new: ProxyPlan, iptables: str = "iptables") -> str:
    """What changed between two plans: VIPs and servers added, edited or deleted."""
    before, after = vips(old), vips(new)
    lines = ["# labkit: kube-proxy's IPVS mode, partial sync", *_setup()]
    lines += _addresses(
        [f"addr replace {vip}/32 dev {DEVICE}" for vip in after if vip not in before]
        + [f"addr del {vip}/32 dev {DEVICE}" for vip in before if vip not in after]
    )
    lines += _ipvs_restore(_partial_commands(old, new))
    lines += _iptables(new, iptables)
    return "\n".join(lines) + "\n"


def digest_command(iptables: str = "iptables") -> str:
    """What the drift check hashes: the IPVS table, the addresses (VIPs and the node's,
    which node ports follow) and labkit's iptables rules."""
    save = f"{iptables}-save"
    return (
        "{ ipvsadm-save -n 2>/dev/null | sort; "
        "ip -4 -o addr show scope global | awk '{print $2, $4}' | sort; "
        f"{{ {save} -t filter; {save} -t nat; }} 2>/dev/null "
        "| grep -E '^(:KUBE-|-A KUBE-|-A [A-Z]+ .*-j KUBE-)' | sed 's/ \\[[0-9]*:[0-9]*\\]$//'; } "
        "| md5sum"
    )


def cleanup_lines() -> list[str]:
    """Undo the IPVS part (the caller removes the iptables chains)."""
    return [
        "ipvsadm -C 2>/dev/null || true",
        f"ip link del {DEVICE} 2>/dev/null || true",
    ]


def rule_count(plan: ProxyPlan) -> int:
    """Virtual plus real servers (node ports counted once, not per node address)."""
    return len(_full_commands(plan))
