#!/usr/bin/env python3
"""A continuous HTTP client, run inside a lab node (stdlib only).

One request at a time, each on a new connection (so every request tests the
path anew: ARP, the VIP's owner, the proxy's listener), for a bounded time or
until a stop file appears. Appends one JSON line per request to the output
file as it goes, `[start, end, status, detail]` with wall-clock times
(containers share the host's clock), status 0 for a failed request and the
error in `detail`, else the answering pod's name (echo-server) or ""; the
last line is `"done"`.

The host side (`labkit.load`) copies this file into the node and reads the result.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import time


def one_request(
    address: str, port: int, path: str, host: str | None, timeout: float
) -> tuple[int, str]:
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        headers = {"Connection": "close", **({"Host": host} if host else {})}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        detail = ""
        if body.startswith(b"{"):
            try:
                detail = str(json.loads(body).get("pod", ""))
            except ValueError:
                detail = ""
        return response.status, detail
    except (OSError, http.client.HTTPException) as exc:
        return 0, type(exc).__name__
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--path", default="/")
    parser.add_argument("--host")
    parser.add_argument("--timeout", type=float, default=0.5)
    parser.add_argument("--pause", type=float, default=0.01)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    deadline = time.time() + args.duration
    with open(args.out, "w", buffering=1) as out:  # line-buffered: the host follows it
        while time.time() < deadline and not os.path.exists(args.stop_file):
            start = time.time()
            status, detail = one_request(
                args.address, args.port, args.path, args.host, args.timeout
            )
            out.write(json.dumps([round(start, 4), round(time.time(), 4), status, detail]) + "\n")
            time.sleep(args.pause)
        out.write('"done"\n')


if __name__ == "__main__":
    main()
