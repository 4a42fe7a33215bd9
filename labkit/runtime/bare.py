"""The reference every `up` is measured against: the same node containers, started bare.

One internal network and `count` node containers (the same image, the same
security options, static addresses) started in parallel with the SDK, and
nothing else: no pods, no scripts, no layers. What any lab tool must at least
do. Run as its own process, so that both sides pay a process start:

    python -m labkit.runtime.bare up NAME COUNT    # prints nothing; exit 0 when all run
    python -m labkit.runtime.bare down NAME
"""

from __future__ import annotations

import sys
from ipaddress import IPv4Network

from labkit.concurrency import parallel
from labkit.errors import LabkitError
from labkit.runtime.docker import DockerRuntime
from labkit.runtime.docker_removal import remove_lab_objects

# RFC 2544's benchmarking range (its upper half: the underlay probe takes the lower).
BARE_SUPERNET = IPv4Network("198.19.0.0/16")


def free_subnet(runtime: DockerRuntime) -> IPv4Network:
    taken = runtime.taken_subnets()
    for subnet in BARE_SUPERNET.subnets(new_prefix=22):
        if not any(subnet.overlaps(other) for other in taken):
            return subnet
    raise LabkitError(f"no free /22 left in {BARE_SUPERNET} for the bare reference")


def start_bare(runtime: DockerRuntime, name: str, count: int) -> None:
    image = runtime.node_image()
    subnet = free_subnet(runtime)
    runtime.create_network(name, "net", subnet)
    hosts = list(subnet.hosts())[1:]  # .1 is the network's gateway
    parallel(lambda i: runtime.create_node(name, f"n{i}", image, {"net": hosts[i]}), range(count))


def remove_bare(runtime: DockerRuntime, name: str) -> None:
    """The containers force-removed in parallel, then the network: `docker rm -f`, then
    `docker network rm` (labkit's own removal detaches first to overlap the two)."""
    remove_lab_objects(runtime.client.api, name, detach_first=False)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("up", "down") or (argv[0] == "up" and len(argv) != 3):
        print(__doc__, file=sys.stderr)
        return 2
    runtime = DockerRuntime()
    if argv[0] == "up":
        start_bare(runtime, argv[1], int(argv[2]))
    else:
        remove_bare(runtime, argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
