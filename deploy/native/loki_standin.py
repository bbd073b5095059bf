"""A native STAND-IN for Loki's OTLP log endpoint (stdlib only). It is NOT Loki.

Loki is AGPL-licensed and runs in docker-compose only. Natively, the collector's
``otlp_http/loki`` exporter would retry forever against a closed port and count send
failures, which trips the "collector failing" alerts. This stand-in accepts OTLP/HTTP log
exports at ``/otlp/v1/logs`` (protobuf or JSON, any compression), answers 200 with an empty
export response, and only counts what it received. Nothing is stored or queryable; the logs
the collector receives are also written to ``logs.jsonl`` by its file exporter.

POST /otlp/v1/logs  accepted (200), counted
GET  /ready         200 "ready" (same path as Loki)
GET  /stats         {"requests": N, "bytes": N}

    python loki_standin.py --host 127.0.0.1 --port 3100
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

LOGS_PATH = "/otlp/v1/logs"
MAX_BODY = 64 << 20


class Handler(BaseHTTPRequestHandler):
    counts: ClassVar[dict[str, int]] = {"requests": 0, "bytes": 0}
    lock: ClassVar[threading.Lock] = threading.Lock()

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/ready":
            self._send(200, b"ready", "text/plain")
        elif self.path == "/stats":
            with self.lock:
                body = json.dumps(self.counts).encode()
            self._send(200, body, "application/json")
        else:
            self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        if self.path != LOGS_PATH:
            self._send(404, b"not found", "text/plain")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            self._send(413, b"too large", "text/plain")
            return
        self.rfile.read(length)
        with self.lock:
            self.counts["requests"] += 1
            self.counts["bytes"] += length
        # An empty ExportLogsServiceResponse: zero bytes in protobuf, {} in JSON.
        if "json" in (self.headers.get("Content-Type") or ""):
            self._send(200, b"{}", "application/json")
        else:
            self._send(200, b"", "application/x-protobuf")

    def log_message(self, format: str, *args: object) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OTLP/HTTP log sink standing in for Loki")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3100)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(
        f"loki stand-in (NOT Loki: accepts and counts OTLP logs) on {args.host}:{args.port}",
        file=sys.stderr,
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
