"""kube-proxy's IPVS mode, rendered: small cases against the expected text."""

from __future__ import annotations

import dataclasses
import subprocess
from ipaddress import IPv4Address

from kubeproxy_cases import CHANGED, DNS, EMPTY, PLAN, WEB

from labkit.dataplane import kubeproxy_ipvs as ipvs
from labkit.dataplane.kubeproxy import EndpointPlan, ProxyPlan
from labkit.dataplane.proxy_modes import mode_of, sync_script

SETUP = """\
sysctl -qw net.ipv4.vs.conntrack=1 net.ipv4.vs.expire_nodest_conn=1 net.ipv4.vs.expire_quiescent_template=1
ip link show kube-ipvs0 >/dev/null 2>&1 || ip link add kube-ipvs0 type dummy
"""
NODE_LOOP = (
    "for a in $(ip -4 -o addr show scope global "
    """| awk '$2 != "kube-ipvs0" && $2 != "lo" {sub("/.*", "", $4); print $4}'); do\n"""
)
IPTABLES = """\
iptables-restore --noflush <<'LABKIT_IPVS_IPTABLES_EOF'
*filter
:KUBE-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
-A KUBE-SERVICES -d 10.96.0.3/32 -p tcp -m tcp --dport 80 -m comment --comment "default/empty has no endpoints" -j REJECT --reject-with icmp-port-unreachable
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
{hairpins}\
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-SERVICES ! -s 10.244.0.0/16 -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -m comment --comment "default/web:http cluster IP" -j KUBE-MARK-MASQ
-A KUBE-SERVICES ! -s 10.244.0.0/16 -d 10.96.0.2/32 -p udp -m udp --dport 53 -m comment --comment "default/dns cluster IP" -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -m comment --comment "default/web:http cluster IP" -j ACCEPT
-A KUBE-SERVICES -d 10.96.0.2/32 -p udp -m udp --dport 53 -m comment --comment "default/dns cluster IP" -j ACCEPT
-A KUBE-NODE-PORT -p tcp -m tcp --dport 30080 -m comment --comment default/web:http -j KUBE-MARK-MASQ
COMMIT
LABKIT_IPVS_IPTABLES_EOF
"""
HAIRPIN = (
    "-A KUBE-POSTROUTING -s {ip}/32 -d {ip}/32 -p {proto} -m {proto} --dport {port} "
    '-m comment --comment "hairpin: endpoint reaching itself through a service" -j MASQUERADE\n'
)
HAIRPINS_FULL = "".join(
    HAIRPIN.format(ip=ip, proto=proto, port=port)
    for ip, proto, port in [
        ("10.244.0.2", "tcp", 8080),
        ("10.244.0.3", "udp", 5353),
        ("10.244.1.2", "tcp", 8080),
    ]
)
HAIRPINS_CHANGED = "".join(
    HAIRPIN.format(ip=ip, proto=proto, port=port)
    for ip, proto, port in [("10.244.0.2", "tcp", 8080), ("10.244.0.3", "udp", 5353)]
)

FULL = (
    "# labkit: kube-proxy's IPVS mode, full sync\n"
    + SETUP
    + """\
ip addr flush dev kube-ipvs0
ip -batch - <<'LABKIT_IPVS_ADDR_EOF'
addr replace 10.96.0.1/32 dev kube-ipvs0
addr replace 10.96.0.2/32 dev kube-ipvs0
addr replace 10.96.0.3/32 dev kube-ipvs0
LABKIT_IPVS_ADDR_EOF
ipvsadm -C
{
cat <<'LABKIT_IPVS_EOF'
-A -t 10.96.0.1:80 -s rr
-a -t 10.96.0.1:80 -r 10.244.0.2:8080 -m -w 1
-a -t 10.96.0.1:80 -r 10.244.1.2:8080 -m -w 1
-A -u 10.96.0.2:53 -s rr -p 60
-a -u 10.96.0.2:53 -r 10.244.0.3:5353 -m -w 1
LABKIT_IPVS_EOF
"""
    + NODE_LOOP
    + """\
cat <<LABKIT_IPVS_NODEPORT_EOF
-A -t $a:30080 -s rr
-a -t $a:30080 -r 10.244.0.2:8080 -m -w 1
-a -t $a:30080 -r 10.244.1.2:8080 -m -w 1
LABKIT_IPVS_NODEPORT_EOF
done
} | ipvsadm -R
"""
    + IPTABLES.replace("{hairpins}", HAIRPINS_FULL)
)

PARTIAL = (
    "# labkit: kube-proxy's IPVS mode, partial sync\n"
    + SETUP
    + """\
{
cat <<'LABKIT_IPVS_EOF'
-d -t 10.96.0.1:80 -r 10.244.1.2:8080
LABKIT_IPVS_EOF
"""
    + NODE_LOOP
    + """\
cat <<LABKIT_IPVS_NODEPORT_EOF
-d -t $a:30080 -r 10.244.1.2:8080
LABKIT_IPVS_NODEPORT_EOF
done
} | ipvsadm -R
"""
    + IPTABLES.replace("{hairpins}", HAIRPINS_CHANGED)
)


def test_full_payload_binds_every_vip_and_loads_every_virtual_server():
    assert ipvs.render_full(PLAN) == FULL


def test_partial_payload_deletes_only_the_removed_real_server():
    assert ipvs.render_partial(PLAN, CHANGED) == PARTIAL


def test_payloads_are_valid_shell():
    for payload in (FULL, PARTIAL):
        subprocess.run(["sh", "-n"], input=payload, text=True, check=True)


def _ipvs_part(payload: str) -> list[str]:
    return [
        line
        for line in payload.splitlines()
        if line.startswith(("-A -", "-a -", "-d -", "-D -", "-E -"))
    ]


def test_partial_adds_and_removes_services_and_vips():
    gone_web = dataclasses.replace(PLAN, services=(DNS, EMPTY))
    payload = ipvs.render_partial(PLAN, gone_web)
    assert "addr del 10.96.0.1/32 dev kube-ipvs0" in payload
    assert _ipvs_part(payload) == ["-D -t 10.96.0.1:80", "-D -t $a:30080"]
    back = ipvs.render_partial(gone_web, PLAN)
    assert "addr replace 10.96.0.1/32 dev kube-ipvs0" in back
    assert _ipvs_part(back) == [
        "-A -t 10.96.0.1:80 -s rr",
        "-a -t 10.96.0.1:80 -r 10.244.0.2:8080 -m -w 1",
        "-a -t 10.96.0.1:80 -r 10.244.1.2:8080 -m -w 1",
        "-A -t $a:30080 -s rr",
        "-a -t $a:30080 -r 10.244.0.2:8080 -m -w 1",
        "-a -t $a:30080 -r 10.244.1.2:8080 -m -w 1",
    ]


def test_partial_gives_a_service_its_first_endpoint_and_edits_affinity():
    filled = dataclasses.replace(EMPTY, endpoints=(EndpointPlan(IPv4Address("10.244.2.2"), 8080),))
    sticky_web = dataclasses.replace(WEB, affinity_seconds=10800)
    old = ProxyPlan(PLAN.cluster_cidr, (WEB, EMPTY))
    new = ProxyPlan(PLAN.cluster_cidr, (sticky_web, filled))
    payload = ipvs.render_partial(old, new)
    assert _ipvs_part(payload) == [
        "-E -t 10.96.0.1:80 -s rr -p 10800",
        "-A -t 10.96.0.3:80 -s rr",
        "-a -t 10.96.0.3:80 -r 10.244.2.2:8080 -m -w 1",
        "-E -t $a:30080 -s rr -p 10800",
    ]
    assert "no endpoints" not in payload  # its REJECT rule is gone
    assert "ip -batch" not in payload  # the VIPs did not change


def test_nothing_changed_touches_no_ipvs_server():
    assert "ipvsadm" not in ipvs.render_partial(PLAN, PLAN)


def test_mode_runs_the_payload_as_a_script_and_hooks_input_for_rejects():
    mode = mode_of("ipvs", "legacy")  # the iptables backend choice is the iptables mode's
    assert mode.apply_command("/p") == "sh -e /p"
    assert mode.render_full(PLAN, ["KUBE-SVC-STALE"]) == FULL
    assert mode.rule_count(PLAN) == 8  # virtual plus real servers
    hooks = mode.hook_commands()
    assert any("-t filter -I INPUT 1 -m conntrack --ctstate NEW" in h for h in hooks)
    assert not any("KUBE-EXTERNAL-SERVICES" in h or "KUBE-NODEPORTS" in h for h in hooks)
    assert "ipvsadm-save -n" in mode.digest_command()
    assert "ip link del kube-ipvs0" in mode.cleanup_script()
    script = sync_script(mode, payload=FULL, path="/p", expected_digest="abc")
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)
