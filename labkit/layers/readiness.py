"""Pod readiness, as a Service sees it: every container of the pod alive.

`PodHandle.ready()` costs an exec per pod; here one exec per node answers for
all the pods of that node.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from labkit.dataplane import pods as pod_plan

if TYPE_CHECKING:
    from labkit.lab import Lab


def _readiness_script(pods: Iterable[str]) -> str:
    """Per pod: `== <pod> netns|gone`, then `<container> up|down` lines."""
    parts = []
    for pod in pods:
        parts.append(
            f"if [ -e /var/run/netns/{pod} ]; then echo '== {pod} netns'; "
            f"else echo '== {pod} gone'; fi"
        )
        parts.append(pod_plan.containers_alive_script(pod))
    return "\n".join(parts) + "\n"


def parse_readiness(output: str, expected: dict[str, set[str]]) -> set[str]:
    """Ready pods: namespace present and every container the spec names alive."""
    alive: dict[str, set[str]] = {}
    present: set[str] = set()
    current = ""
    for line in output.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "==":
            current = words[1]
            alive.setdefault(current, set())
            if words[2] == "netns":
                present.add(current)
        elif len(words) == 2 and current and words[1] == "up":
            alive[current].add(words[0])
    return {
        pod
        for pod, containers in expected.items()
        if pod in present and containers <= alive.get(pod, set())
    }


def probe_ready(lab: Lab, nodes: Iterable[str] | None = None) -> set[str]:
    """The pods whose containers are all alive, probed with one exec per node."""
    from labkit.faults import stopped_nodes
    from labkit.lab import parallel

    wanted = set(nodes) if nodes is not None else set(lab.addresses.pod_subnets)
    wanted -= stopped_nodes(lab)  # a stopped node's pods are not ready

    def on_node(node: str) -> set[str]:
        pods = lab.pods_on(node)
        if not pods:
            return set()
        expected = {pod: set(lab.pod_spec(pod).containers()) for pod in pods}
        output = lab.node(node).exec(_readiness_script(pods)).stdout
        return parse_readiness(output, expected)

    ready: set[str] = set()
    for found in parallel(on_node, sorted(wanted)):
        ready |= found
    return ready
