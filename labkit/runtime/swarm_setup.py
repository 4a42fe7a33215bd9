"""Setting hosts up for one lab: connecting to them, forming a swarm, shipping images.

Images go by save/load through the SDK, by their content-hash tag: nothing is
ever pulled from a registry.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence

import docker
import docker.errors
import docker.tls

from labkit.concurrency import parallel
from labkit.topology.inventory import Host


def connect_host(host: Host, timeout: int = 120) -> docker.DockerClient:
    """A client for one hosts-file entry (TLS for tcp://, the system ssh for ssh://)."""
    if host.scheme == "tcp":
        assert host.tls is not None  # the inventory refuses plain tcp://
        tls = docker.tls.TLSConfig(
            client_cert=(host.tls.cert, host.tls.key),
            ca_cert=host.tls.ca,
            verify=host.tls.verify,
        )
        return docker.DockerClient(base_url=host.url, tls=tls, timeout=timeout)
    return docker.DockerClient(
        base_url=host.url, timeout=timeout, use_ssh_client=host.scheme == "ssh"
    )


def form_swarm(
    clients: Sequence[docker.DockerClient], addresses: Sequence[str], managers: int = 1
) -> None:
    """Init a swarm on the first engine, join the rest (the first `managers` as managers)."""
    first = clients[0]
    first.swarm.init(advertise_addr=addresses[0], listen_addr=f"{addresses[0]}:2377")
    first.swarm.reload()
    tokens = first.swarm.attrs["JoinTokens"]
    remote = f"{addresses[0]}:2377"

    def join(index: int) -> None:
        token = tokens["Manager"] if index < managers else tokens["Worker"]
        clients[index].swarm.join(
            remote_addrs=[remote],
            join_token=token,
            advertise_addr=addresses[index],
            listen_addr=f"{addresses[index]}:2377",
        )

    parallel(join, range(1, len(clients)))


def _has(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def ship_image(
    source: docker.DockerClient, targets: Sequence[docker.DockerClient], tag: str
) -> int:
    """Copy image `tag` by save/load to each target that lacks it; how many got it.

    One target: the save stream goes straight into load. Several: saved once to
    a file, then loaded into all in parallel (one save instead of N).
    """
    missing = [target for target in targets if not _has(target, tag)]
    if not missing:
        return 0
    if len(missing) == 1:
        missing[0].api.load_image(source.api.get_image(tag, chunk_size=1 << 20), quiet=True)
    else:
        with tempfile.NamedTemporaryFile(dir="/var/tmp", prefix="labkit-image-") as archive:
            for chunk in source.api.get_image(tag, chunk_size=1 << 20):
                archive.write(chunk)
            archive.flush()

            def load(target: docker.DockerClient) -> None:
                with open(archive.name, "rb") as own:  # an offset of its own per thread
                    target.api.load_image(iter(lambda: own.read(1 << 20), b""), quiet=True)

            parallel(load, missing)
    for target in missing:
        target.images.get(tag)  # raises if a load did not give the tag
    return len(missing)
