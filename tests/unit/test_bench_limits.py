"""The references `labkit bench paths` measures the pod paths against, and the
pieces it takes away: what they build, without labs."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from labkit.bench import limits
from labkit.core import probes

BENCHMARKING = IPv4Network("198.18.0.0/15")  # RFC 2544: nothing real lives there


def test_bare_vxlan_runs_over_a_veth_at_the_underlay_mtu_less_vxlan_s_overhead():
    text = limits.bare_script(9000)
    assert "type veth peer name veth0 netns bare-b mtu 9000" in text
    assert "mtu 9000 type veth" in text
    assert text.count("type vxlan id 1 ") == 2 and "dstport 8472 nolearning" in text
    assert text.count("flannel.1 mtu 8950 up") == 2
    assert all(ip in BENCHMARKING for ip in (*limits.VETH_IPS, *limits.VXLAN_IPS))


def test_a_direct_pod_has_a_veth_a_host_route_and_proxy_arp_but_no_bridge():
    text = limits.direct_script(IPv4Address("10.244.1.250"), 1450)
    assert "ip route replace 10.244.1.250/32 dev bd-host" in text
    assert "/proc/sys/net/ipv4/conf/bd-host/proxy_arp" in text
    assert "default via 169.254.1.1" in text
    assert "bridge" not in text and "master" not in text


def test_every_piece_puts_back_what_it_changes():
    for piece in limits.PIECES:
        assert piece.apply != piece.revert
    conntrack = next(p for p in limits.PIECES if p.name == "no conntrack")
    assert conntrack.apply.replace("-I", "-D").replace(" 1 -j", " -j") == conntrack.revert


def test_cost_per_cpu_second_counts_both_ends():
    run = probes.IperfResult(
        "TCP", 8e9, raw={"end": {"cpu_utilization_percent": {"host_total": 50, "remote_total": 30}}}
    )
    assert limits.per_cpu_second(run) == 10.0
    assert limits.per_cpu_second(probes.IperfResult("TCP", 8e9)) == 0.0


class Recorder:
    name = "node"
    ip = IPv4Address("172.31.0.2")

    def __init__(self) -> None:
        self.commands: list[str] = []

    def exec(self, command, *, check=True, timeout=None):
        self.commands.append(command)


def test_measuring_processes_run_at_a_raised_priority_in_their_namespace():
    host = Recorder()
    endpoint = limits.Prioritized(
        limits.InNamespace("a", host, "bare-a", IPv4Address("198.18.0.1"))
    )
    endpoint.exec("iperf3 -s")
    assert host.commands == [
        "ip netns exec bare-a sh -c 'nice -n -10 sh -c '\"'\"'iperf3 -s'\"'\"''"
    ]
    assert endpoint.ip == IPv4Address("198.18.0.1") and endpoint.name == "a"
