"""kube-proxy's service health server, in small: one per node, run by labkit.

The configuration (JSON) maps each health check node port to the status,
headers and body it answers (`dataplane.healthcheck` decides them); it is
re-read on every request, and new ports are listened on within a second.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONFIG = sys.argv[1] if len(sys.argv) > 1 else "/etc/labkit/health.json"


def answers() -> dict[str, dict]:
    try:
        with open(CONFIG) as file:
            return json.load(file)
    except (OSError, ValueError):
        return {}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        port = self.connection.getsockname()[1]
        found = answers().get(str(port))
        if found is None:
            self.send_error(404)
            return
        body = found["body"].encode()
        self.send_response(found["status"])
        for name, value in found["headers"].items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve(port: int) -> None:
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()


if __name__ == "__main__":
    listening: set[int] = set()
    while True:
        for port in {int(p) for p in answers()} - listening:
            threading.Thread(target=serve, args=(port,), daemon=True).start()
            listening.add(port)
        time.sleep(0.5)
