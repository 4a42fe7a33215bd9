"""What the fake-runtime lab tests share: two nodes, a pod on each; the CNI line of a pod."""

import re

TWO_NODES = """
name: fake
networks:
  underlay: {subnet: 10.210.0.0/24}
nodes:
  node-1: {networks: [underlay]}
  node-2: {networks: [underlay]}
cluster: {pod_cidr: 10.244.0.0/16, backend: vxlan}
pods:
  a: {node: node-1, run: [echo-server]}
  b: {node: node-2}
"""

# node-1's underlay link shaped to 20 Mbit/s
IMPAIRED = TWO_NODES.replace(
    "node-1: {networks: [underlay]}",
    "node-1: {networks: [underlay], impair: {underlay: {rate: 20mbit}}}",
)


def cni_add(pod: str) -> str:
    """What a node script holds when it wires `pod` (its line of `labkit-cni add-all`)."""
    return f'"pod": "{pod}"'


def echoes(script: str, after_mark: dict[str, str] | None = None) -> str:
    """What a node script prints of its literal `echo labkit-...` lines (its parts'
    marks and answers), each mark of `after_mark` followed by its text: a node
    script's output, without a shell."""
    out = []
    for line in script.splitlines():
        match = re.fullmatch(r"(?:.*\|\| )?echo (labkit-[\w-]+(?: [^\s$\"']+)*)", line.strip())
        if match:
            out.append(match.group(1))
            out += (after_mark or {}).get(match.group(1), "").splitlines()
    return "\n".join(out) + "\n"
