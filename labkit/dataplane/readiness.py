"""Pod readiness as a Service sees it, probed for all pods of a node in one script. Pure.

A pod is ready when its namespace is there (a host-network pod has none: the
node's own is always there), every container is alive and, when the pod has a
readinessProbe (tcpSocket or httpGet, as the kubelet runs them), every one of
them passes now (a container without a probe counts as ready). Thresholds and
periods are not kept: each sync probes once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address

from labkit.dataplane import pods as pod_plan
from labkit.dataplane.script import q
from labkit.topology.model import Pod, ReadinessProbe, slug


def probe_port(pod: Pod, probe: ReadinessProbe) -> int:
    """The probe's port number (a name is looked up among the pod's ports)."""
    if isinstance(probe.port, int):
        return probe.port
    for port in pod.ports:
        if port.name == probe.port:
            return port.port
    return 0  # a port the pod does not declare: the probe fails, as the kubelet's would


RETRY_SECONDS = 0.3  # between tries of one sync's probe
STARTING_SECONDS = 15  # a pod younger than this is still starting ...
STARTUP_GRACE_SECONDS = 10  # ... and its probe is tried for this long before it counts as failed


def probe_command(pod_key: str, pod: Pod, ip: IPv4Address) -> str:
    """A command that succeeds while every readinessProbe of the pod passes (run on its
    node); the probes run side by side, so it takes as long as the slowest."""
    assert pod.readiness
    checks = [_probe_once_command(pod_key, pod, probe, ip) for probe in pod.readiness]
    if len(checks) == 1:
        return checks[0]
    started = " ".join(f"{check} & p{index}=$!;" for index, check in enumerate(checks))
    waited = " ".join(f"wait $p{index} || ok=1;" for index in range(len(checks)))
    return f"( {started} ok=0; {waited} exit $ok )"


def _probe_once_command(pod_key: str, pod: Pod, probe: ReadinessProbe, ip: IPv4Address) -> str:
    """A command that succeeds while one readinessProbe passes.

    Unready, as for the kubelet, after `failure_threshold` failures in a row,
    tried RETRY_SECONDS apart; a pod that is still starting (its containers
    younger than STARTING_SECONDS) gets up to STARTUP_GRACE_SECONDS, so that
    the sync right after it was created does not drop it for want of a later
    probe (labkit has no kubelet probing in the background).
    """
    port, seconds = probe_port(pod, probe), probe.timeout
    if probe.kind == "tcp":
        once = f"timeout {seconds} bash -c {q(f'exec 3<>/dev/tcp/{ip}/{port}')} 2>/dev/null"
    else:  # httpGet: 200-399 is success; curl -f fails on 400 and above.
        url = q(f"http://{ip}:{port}{probe.path}")
        once = f"curl -fsS -o /dev/null -m {seconds} {url} 2>/dev/null"
    started = f"{pod_plan.STATE_DIR}/{slug(pod_key)}"
    grace = max(probe.failure_threshold, round(STARTUP_GRACE_SECONDS / RETRY_SECONDS))
    return (
        f"( tries={probe.failure_threshold}; "
        f"age=$(( $(date +%s) - $(stat -c %Y {started} 2>/dev/null || echo 0) )); "
        f"[ $age -lt {STARTING_SECONDS} ] && tries={grace}; "
        f"for i in $(seq $tries); do {once} && exit 0; sleep {RETRY_SECONDS}; done; exit 1 )"
    )


def readiness_script(
    pods: Iterable[str], probes: Mapping[str, str] | None = None, host_network: Iterable[str] = ()
) -> str:
    """Per pod: `== <pod> netns|gone`, `<container> up|down` lines; then, from the probes
    run side by side, `probe <pod> ok|fail`.

    `pods` are keys; `probes`: pod -> probe command; `host_network`: pods in the
    node's own namespace (none of their own to look for).
    """
    probes, in_node = probes or {}, set(host_network)
    parts = []
    for pod in pods:
        netns = slug(pod)
        if pod in in_node:
            parts.append(f"echo '== {pod} netns'")
        else:
            parts.append(
                f"if [ -e /var/run/netns/{netns} ]; then echo '== {pod} netns'; "
                f"else echo '== {pod} gone'; fi"
            )
        parts.append(pod_plan.containers_alive_script(pod))
    # Side by side: a node's sync takes as long as its slowest probe, not their sum.
    # Each run writes into a folder of its own: two runs at once (a sync, `labkit
    # get pods`, `PodHandle.ready`) must not read each other's half-written answers.
    probed = [pod for pod in pods if probes.get(pod)]
    if probed:
        parts.append("probed=$(mktemp -d /tmp/labkit-probe.XXXXXX)")
    parts += [
        f"( if {probes[pod]}; then echo 'probe {pod} ok'; else echo 'probe {pod} fail'; fi ) "
        f'> "$probed/{slug(pod)}" &'
        for pod in probed
    ]
    if probed:
        parts.append("wait")
        parts += [f'cat "$probed/{slug(pod)}"' for pod in probed]
        parts.append('rm -rf "$probed"')
    return "\n".join(parts) + "\n"


def parse_readiness(
    output: str, expected: dict[str, set[str]], probed: Iterable[str] = ()
) -> set[str]:
    """Ready pods: namespace present, every container the spec names alive, probe passed."""
    alive: dict[str, set[str]] = {}
    present: set[str] = set()
    passed: set[str] = set()
    current = ""
    for line in output.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "==":
            current = words[1]
            alive.setdefault(current, set())
            if words[2] == "netns":
                present.add(current)
        elif len(words) == 3 and words[0] == "probe":
            if words[2] == "ok":
                passed.add(words[1])
        elif len(words) == 2 and current and words[1] == "up":
            alive[current].add(words[0])
    probed = set(probed)
    return {
        pod
        for pod, containers in expected.items()
        if pod in present
        and containers <= alive.get(pod, set())
        and (pod not in probed or pod in passed)
    }
