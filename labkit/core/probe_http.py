"""HTTP GET with curl, and what the echo server answered."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from labkit.core.endpoint import Endpoint, Target
from labkit.core.probe_results import address_of
from labkit.dataplane.script import q


@dataclass(frozen=True)
class HttpResult:
    status: int
    body: str
    seconds: float
    error: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400

    @property
    def pod(self) -> str:
        """Which pod answered (from the echo server)."""
        return str(self.data.get("pod", ""))

    @property
    def client_ip(self) -> str:
        """The client address the echo server saw."""
        return str(self.data.get("client_ip", ""))

    def __str__(self) -> str:
        return f"HTTP {self.status} from {self.pod or '?'}" if self.status else self.error


def http_get(
    source: Endpoint,
    target: Target,
    port: int = 8080,
    path: str = "/",
    *,
    host: str | None = None,
    timeout: float = 3.0,
) -> HttpResult:
    url = f"http://{address_of(target)}:{port}{path}"
    words = ["curl", "-sS", "-m", str(timeout), "-o", "-", "-w", q("\n%{http_code} %{time_total}")]
    if host:
        words += ["-H", q(f"Host: {host}")]
    words.append(q(url))
    result = source.exec(" ".join(words), check=False, timeout=timeout + 5)
    return parse_curl(result.stdout, result.stderr)


def parse_curl(stdout: str, stderr: str = "") -> HttpResult:
    body, _, trailer = stdout.rpartition("\n")
    parts = trailer.split()
    status = int(parts[0]) if parts and parts[0].isdigit() else 0
    seconds = float(parts[1]) if len(parts) > 1 else 0.0
    data: dict[str, Any] = {}
    if body.lstrip().startswith("{"):
        try:
            data = json.loads(body)
        except json.JSONDecodeError:
            data = {}
    return HttpResult(status, body, seconds, stderr.strip() if not status else "", data)
