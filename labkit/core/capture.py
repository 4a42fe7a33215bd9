"""Packet capture on a node or a pod, streamed from the engine as it happens.

    with Capture(lab.pod("web-1"), open("web.pcap", "wb")) as capture:
        ...                                   # packets land in web.pcap
    capture.packets                            # what tcpdump reported

The stream is read in a thread and written to `sink` chunk by chunk; `stop`
asks tcpdump to end (SIGINT: it flushes its last packets) and waits for the
stream to close, so a pcap is always complete.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import BinaryIO

from labkit.core.handles import NodeHandle, PodHandle
from labkit.dataplane.capture import READY, capture_command, stop_command
from labkit.errors import LabkitError

READY_SECONDS = 10.0
STOP_SECONDS = 10.0


class Capture:
    def __init__(
        self,
        endpoint: NodeHandle | PodHandle,
        sink: BinaryIO,
        *,
        iface: str | None = None,
        filter_words: Sequence[str] = (),
    ) -> None:
        self.endpoint = endpoint
        self.sink = sink
        self.id = uuid.uuid4().hex[:12]
        pod = endpoint.name if isinstance(endpoint, PodHandle) else None
        self.container = endpoint.node.container
        self.runtime = endpoint.cluster.runtime
        self.command = capture_command(self.id, pod, iface, filter_words)
        self.stderr = b""
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(
            target=self._pump, name=f"capture-{endpoint.name}", daemon=True
        )

    def _pump(self) -> None:
        try:
            for stdout, stderr in self.runtime.exec_stream(self.container, self.command):
                if stdout:
                    self.sink.write(stdout)
                    self.sink.flush()
                if stderr:
                    self.stderr += stderr
                    if READY in self.stderr:
                        self._ready.set()
        except BaseException as exc:  # reported by start/stop, in the caller's thread
            self.error = exc
        finally:
            self._ready.set()

    def start(self) -> Capture:
        """Start tcpdump and wait until it captures (so no early packet is missed)."""
        self._thread.start()
        if not self._ready.wait(READY_SECONDS) or READY not in self.stderr:
            self.stop()
            raise LabkitError(
                f"tcpdump did not start on {self.endpoint.name}: {self.messages or self.error}"
            )
        return self

    def wait(self) -> None:
        """Block until the capture ends (Ctrl-C raises KeyboardInterrupt here)."""
        while self._thread.is_alive():
            self._thread.join(0.2)

    def stop(self) -> None:
        """End tcpdump (also when the reader went away first: a closed pipe) and the stream."""
        if not self._stopped:
            self._stopped = True
            self.runtime.exec(self.container, stop_command(self.id), check=False)
        self._thread.join(STOP_SECONDS)

    @property
    def messages(self) -> str:
        return self.stderr.decode(errors="replace").strip()

    @property
    def packets(self) -> int | None:
        """How many packets tcpdump says it captured (once stopped)."""
        found = re.search(r"(\d+) packets? captured", self.messages)
        return int(found.group(1)) if found else None

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
