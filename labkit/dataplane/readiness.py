"""Pod readiness as a Service sees it, probed for all pods of a node in one script. Pure."""

from __future__ import annotations

from collections.abc import Iterable

from labkit.dataplane import pods as pod_plan


def readiness_script(pods: Iterable[str]) -> str:
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
