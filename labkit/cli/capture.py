"""`labkit capture NODE|POD`: tcpdump on a node or in a pod, pcap to a file or stdout.

labkit capture web-1 | wireshark -k -i -
labkit capture node-1 --iface eth0 -w node-1.pcap -- udp port 4789
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from labkit.cli.common import app, err, friendly, lab_of_endpoint
from labkit.errors import UsageError


@app.command()
@friendly
def capture(
    target: Annotated[str, typer.Argument(help="A node or a pod")],
    filter_words: Annotated[
        list[str] | None, typer.Argument(help="A tcpdump filter, after --")
    ] = None,
    iface: Annotated[
        str | None, typer.Option("--iface", "-i", help="Interface (pod: eth0, node: any)")
    ] = None,
    write: Annotated[
        Path | None, typer.Option("--write", "-w", help="pcap file (default: stdout)")
    ] = None,
    lab_name: Annotated[str | None, typer.Option("--lab", help="Lab name")] = None,
) -> None:
    """Capture packets (tcpdump) until Ctrl-C; pcap to -w FILE, or to stdout for a pipe."""
    if write is None and sys.stdout.isatty():
        raise UsageError(
            "pcap is binary: pipe it (| wireshark -k -i -, | tcpdump -r -) or use -w FILE"
        )
    from labkit.core.capture import Capture

    _, endpoint = lab_of_endpoint(target, lab_name)
    sink: BinaryIO = write.open("wb") if write else sys.stdout.buffer
    running = Capture(endpoint, sink, iface=iface, filter_words=filter_words or [])
    try:
        running.start()
        err().print(f"capturing on {target} ({running.messages.splitlines()[-1]}); Ctrl-C stops")
        running.wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
        if write:
            sink.close()
    err().print(
        f"{running.packets if running.packets is not None else 'no'} packets captured"
        + (f" in {write}" if write else "")
    )
