"""`labkit bench entry`: what each way into the cluster costs, and how long the
entry is gone when its master fails.

From the same external client (a node on the underlay, outside the pod
network), wrk measures request latency (p50/p99) and requests per second on:

- pod directly: the client routes the pod's node subnet via that node, as a
  flat routed pod network (BGP to the top of rack) would give it;
- Service VIP: the client routes the service CIDR via the floating VIP, as a
  cluster that advertises its service range at the entry does; the VIP's
  holder DNATs (kube-proxy) to a pod;
- NodePort: the floating VIP on the service's node port;
- ingress -> pods: the proxy on the VIP's holder, upstream mode `endpoints`;
- ingress -> Service VIP -> pods: the same, upstream mode `service`.

Then, for each VRRP advertisement interval, the continuous client measures
the outage and the failed requests when the master's keepalived stops, its
proxy is killed, and the whole master node stops (a silent death, where the
advertisement interval decides).
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from labkit.bench.latency import measure
from labkit.bench.report import figures_table, fresh_lab, lab_name, write_json
from labkit.core.handles import NodeHandle
from labkit.dataplane.script import q
from labkit.errors import LabkitError
from labkit.lab import Lab
from labkit.load import ContinuousClient
from labkit.topology import load_topology

ADVERT_INTERVALS = (1.0, 0.2)
SCENARIOS = ("keepalived_stop", "proxy_kill", "node_stop")


# -- wrk ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    p50_ms: float
    p99_ms: float
    requests_per_s: float
    requests: int
    errors: int  # socket errors plus non-2xx/3xx answers


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not found:
        raise LabkitError(f"wrk: cannot read the duration {text!r}")
    return float(found.group(1)) * _UNITS_MS[found.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """wrk's `--latency` report."""
    percentiles = dict(re.findall(r"^\s+(\d+)%\s+(\S+)$", output, re.M))
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total = re.search(r"^\s+(\d+) requests in", output, re.M)
    if not (rate and total and "50" in percentiles and "99" in percentiles):
        raise LabkitError(f"wrk printed no report:\n{output[-600:]}")
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = sum(map(int, socket.groups())) if socket else 0
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return WrkResult(
        _ms(percentiles["50"]), _ms(percentiles["99"]), float(rate.group(1)),
        int(total.group(1)), errors,
    )  # fmt: skip


def wrk(
    client: NodeHandle, url: str, host: str | None, seconds: float, connections: int
) -> WrkResult:
    words = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "2s"]
    if host:
        words += ["-H", q(f"Host: {host}")]
    words.append(q(url))
    return parse_wrk(client.exec(" ".join(words), timeout=seconds + 20).stdout)


# -- the paths ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryPath:
    name: str
    url: str
    host: str | None
    upstream: str | None  # the ingress upstream mode it needs, if it goes through the ingress
    hops: str


def entry_paths(lab: Lab, service: str, host: str) -> list[EntryPath]:
    vrrp = lab.topology.vrrp
    assert vrrp is not None
    handle = lab.service(service)
    port = handle.ports[0]
    pod = lab.services.endpoints(service)[0]
    target = pod.ports[port.name or str(port.port)]
    node_port = handle.node_port(port.name or port.port)
    vip = vrrp.vip
    return [
        EntryPath("pod direct", f"http://{pod.ip}:{target}/", None, None, f"{pod.node} -> pod"),
        EntryPath(
            "Service VIP", f"http://{handle.vip}:{port.port}/", None, None,
            "VIP holder: DNAT -> pod",
        ),
        EntryPath("NodePort", f"http://{vip}:{node_port}/", None, None, "VIP: DNAT -> pod"),
        EntryPath("ingress -> pods", f"http://{vip}/", host, "endpoints", "VIP: proxy -> pod"),
        EntryPath(
            "ingress -> Service VIP -> pods", f"http://{vip}/", host, "service",
            "VIP: proxy -> DNAT -> pod",
        ),
    ]  # fmt: skip


def route_client(lab: Lab, client: NodeHandle, service: str) -> None:
    """Give the external client its routes: to one pod's node, and to the services via the VIP."""
    vrrp = lab.topology.vrrp
    assert vrrp is not None
    pod = lab.services.endpoints(service)[0]
    subnet = lab.addresses.pod_subnets[pod.node]
    client.exec(
        f"ip route replace {subnet} via {lab.addresses.node_ip(pod.node)} && "
        f"ip route replace {lab.topology.cluster.service_cidr} via {vrrp.vip}"
    )


def answering_pods(client: NodeHandle, path: EntryPath, count: int = 40) -> dict[str, int]:
    """Which pods answer `count` requests sent one after another (load balancing as seen)."""
    header = f"-H {q(f'Host: {path.host}')} " if path.host else ""
    out = client.exec(
        f"for i in $(seq {count}); do curl -s -m 2 {header}{q(path.url)}; echo; done",
        timeout=count * 2 + 10,
    ).stdout
    pods = re.findall(r'"pod": "([^"]+)"', out)
    return {pod: pods.count(pod) for pod in sorted(set(pods))}


def measure_paths(
    lab: Lab, client: NodeHandle, paths: list[EntryPath], seconds: float, connections: int,
    rounds: int, console: Console,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """wrk on every path, `rounds` times interleaved (the host's noise spreads over all
    paths alike); the median of each figure."""
    samples: dict[str, list[WrkResult]] = {path.name: [] for path in paths}
    pods: dict[str, dict[str, int]] = {}
    for round_number in range(1, rounds + 1):
        console.print(
            f"  round {round_number}/{rounds}: wrk {connections} connections x {seconds:g} s"
        )
        for path in paths:
            if path.upstream is not None:
                lab.ingress.set_upstream(path.upstream)
            wrk(client, path.url, path.host, 1, connections)  # warm up: ARP, conntrack, pools
            samples[path.name].append(wrk(client, path.url, path.host, seconds, connections))
            if path.name not in pods:
                pods[path.name] = answering_pods(client, path)
    results: dict[str, dict[str, Any]] = {}
    for path in paths:
        found = samples[path.name]
        results[path.name] = {
            "hops": path.hops,
            "url": path.url,
            **{
                key: statistics.median(getattr(sample, key) for sample in found)
                for key in ("p50_ms", "p99_ms", "requests_per_s")
            },
            "errors": sum(sample.errors for sample in found),
            "answering_pods": pods[path.name],
            "rounds": [asdict(sample) for sample in found],
        }
    return results


# -- failover ----------------------------------------------------------------------------


def failover_once(
    lab: Lab, client: NodeHandle, scenario: str, host: str, master: str, backup: str
) -> dict[str, Any]:
    breaks: dict[str, Callable[[], object]] = {
        "keepalived_stop": lambda: lab.vrrp.stop_keepalived(master),
        "proxy_kill": lambda: lab.ingress.stop_proxy(master),
        "node_stop": lambda: lab.faults.stop_node(master),
    }
    restores: dict[str, Callable[[], None]] = {
        "keepalived_stop": lambda: lab.vrrp.start_keepalived(master),
        "proxy_kill": lambda: lab.ingress.start_proxy(master),
        "node_stop": lambda: lab.faults.start_node(master),  # script + layers again
    }
    vip = lab.topology.vrrp.vip  # type: ignore[union-attr]
    with ContinuousClient(client, vip, host=host, timeout=0.2, duration=60) as load:
        load.wait_successes(10)
        started = time.time()
        breaks[scenario]()
        lab.vrrp.wait_holder(backup, within=30)
        moved = time.time() - started
        load.wait_successes(10)
    result = load.result
    assert result is not None
    restores[scenario]()
    lab.vrrp.wait_holder(master, within=30)  # preempt: back to the master
    return {
        "outage_s": result.outage_s,
        "failed_requests": result.failed,
        "requests": result.sent,
        "vip_moved_s": moved,
        "errors": dict(result.errors()),
    }


def measure_failover(
    lab: Lab, client: NodeHandle, host: str, repeats: int, console: Console
) -> dict[str, dict[str, Any]]:
    """Per scenario and advertisement interval: the median of `repeats` failovers."""
    vrrp = lab.topology.vrrp
    assert vrrp is not None
    ranked = sorted(vrrp.priorities, key=lambda n: -vrrp.priorities[n])
    master, backup = ranked[0], ranked[1]
    results: dict[str, dict[str, Any]] = {}
    for interval in ADVERT_INTERVALS:
        lab.vrrp.set(advert_interval=interval)
        lab.vrrp.wait_holder(master, within=30)
        for scenario in SCENARIOS:
            console.print(
                f"  advert_int {interval:g} s: {scenario.replace('_', ' ')} on {master} "
                f"(x{repeats})"
            )
            samples = [
                failover_once(lab, client, scenario, host, master, backup) for _ in range(repeats)
            ]
            results[f"{scenario}@{interval:g}s"] = {
                "scenario": scenario,
                "advert_interval_s": interval,
                "master_down_interval_s": lab.vrrp.master_down_interval(vrrp.priorities[backup]),
                **{
                    key: statistics.median(sample[key] for sample in samples)
                    for key in ("outage_s", "failed_requests", "requests", "vip_moved_s")
                },
                "outage_range_s": [
                    min(s["outage_s"] for s in samples),
                    max(s["outage_s"] for s in samples),
                ],
                "samples": samples,
            }
    return results


# -- the run ---------------------------------------------------------------------------------


def run(
    topology_ref: str,
    *,
    seconds: float,
    connections: int,
    rounds: int,
    failover: bool,
    repeats: int,
    out: Path,
    png: Path,
    console: Console,
) -> dict[str, Any]:
    topology = load_topology(topology_ref)
    if topology.ingress is None or topology.vrrp is None or not topology.ingress.rules:
        raise LabkitError(
            f"topology {topology.name} needs an ingress with rules and a vrrp section"
        )
    rule = topology.ingress.rules[0]
    service, host = rule.service, rule.host
    client_name = next((n for n, spec in topology.nodes.items() if "external" in spec.roles), None)
    if client_name is None:
        raise LabkitError(f"topology {topology.name} has no node with role external (the client)")
    lab = fresh_lab(topology, lab_name(topology.name), console)
    try:
        client = lab.node(client_name)
        route_client(lab, client, service)
        console.print("latency and throughput per entry path:")
        paths = measure_paths(
            lab, client, entry_paths(lab, service, host or ""), seconds, connections, rounds,
            console,
        )  # fmt: skip
        results: dict[str, Any] = {
            "topology": topology.name,
            "controller": topology.ingress.controller,
            "client": client_name,
            "wrk": {"seconds": seconds, "connections": connections, "threads": 1, "rounds": rounds},
            "paths": paths,
        }
        if topology.ingress.tcp or topology.ingress.udp:
            results["l4"] = measure_l4(lab, client, rounds * 200)
        if failover:
            console.print("failover under continuous requests:")
            results["failover"] = measure_failover(lab, client, host or "", repeats, console)
            results["failover_repeats"] = repeats
    finally:
        lab.down()
    show(results, console)
    write_json(out, results, newline=False)
    from labkit.bench.entry_chart import chart

    chart(results, png)
    console.print(f"written: {out}, {png}")
    return results


def show(results: dict[str, Any], console: Console) -> None:
    if not console.is_terminal:  # a log file: do not squeeze the tables into 80 columns
        console = Console(width=130, file=console.file)
    wrk_settings = results["wrk"]
    table = figures_table(
        f"labkit bench entry: {results['controller']}, from the external client; wrk "
        f"{wrk_settings['connections']} connections x {wrk_settings['seconds']:g} s, median of "
        f"{wrk_settings.get('rounds', 1)}",
        ("path", "p50 ms", "p99 ms", "req/s", "errors", "pods answering 40 requests"),
        left=("path", "pods answering 40 requests"),
        caption="; ".join(f"{name}: {found['hops']}" for name, found in results["paths"].items()),
    )
    for name, found in results["paths"].items():
        pods = " ".join(f"{pod}:{n}" for pod, n in found.get("answering_pods", {}).items())
        table.add_row(
            name, f"{found['p50_ms']:.2f}", f"{found['p99_ms']:.2f}",
            f"{found['requests_per_s']:.0f}", str(found["errors"]), pods,
        )  # fmt: skip
    console.print(table)
    show_l4(results, console)
    if "failover" not in results:
        return
    failover = figures_table(
        f"failover through the floating VIP, seconds; median of "
        f"{results['failover_repeats']} (continuous client, 0.2 s timeout)",
        ("case", "advert", "down intvl", "VIP moved", "outage", "range", "failed", "sent"),
        left=("case",),
    )
    for found in results["failover"].values():
        low, high = found["outage_range_s"]
        failover.add_row(
            found["scenario"].replace("_", " "), f"{found['advert_interval_s']:g}",
            f"{found['master_down_interval_s']:.2f}", f"{found['vip_moved_s']:.2f}",
            f"{found['outage_s']:.2f}", f"{low:.2f}-{high:.2f}",
            f"{found['failed_requests']:g}", f"{found['requests']:g}",
        )  # fmt: skip
    console.print(failover)
    console.print(
        "down intvl: RFC 5798 master down interval of the backup; outage: the client's longest "
        "time without an answer; failed: requests without an answer (a refused connection fails "
        "at once, so a dead proxy on a live node counts many)"
    )


# -- L4 entry points ----------------------------------------------------------------------


def measure_l4(lab: Lab, client: NodeHandle, count: int) -> dict[str, dict[str, Any]]:
    """Per L4 entry on the VIP: TCP connect or UDP request/response p50/p99 from the client."""
    ingress, vrrp = lab.topology.ingress, lab.topology.vrrp
    assert ingress is not None and vrrp is not None
    found: dict[str, dict[str, Any]] = {}
    for protocol, table in (("tcp", ingress.tcp), ("udp", ingress.udp)):
        kind = "tcp-connect" if protocol == "tcp" else "udp"
        for port, target in sorted(table.items()):
            figures = measure(client, kind, str(vrrp.vip), port, count)
            found[f"{protocol} {port}"] = {**figures, "target": target, "probe": kind}
    return found


def show_l4(results: dict[str, Any], console: Console) -> None:
    if not results.get("l4"):
        return
    table = figures_table(
        "L4 entries on the floating VIP (nginx stream): TCP connect, UDP request/response",
        ("entry", "to", "probe", "p50 ms", "p99 ms", "failed", "sent"),
        left=("entry", "to", "probe"),
    )
    for entry, found in results["l4"].items():
        table.add_row(
            entry, found["target"], found["probe"], f"{found['p50_ms'] or 0:.3f}",
            f"{found['p99_ms'] or 0:.3f}", str(found["failed"]), str(found["count"]),
        )  # fmt: skip
    console.print(table)
