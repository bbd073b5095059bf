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
import json
import sys
from pathlib import Path
from typing import ClassVar

# The receiver skeleton lives beside the alert webhook (one stdlib file compose mounts).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "alert-webhook"))
from receiver import QuietHandler, serve

LOGS_PATH = "/otlp/v1/logs"


class Handler(QuietHandler):
    max_body: ClassVar[int] = 64 << 20
    counts: ClassVar[dict[str, int]] = {"requests": 0, "bytes": 0}

    def do_GET(self) -> None:
        if self.path == "/ready":
            self.reply(200, b"ready", "text/plain")
        elif self.path == "/stats":
            with self.lock:
                body = json.dumps(self.counts).encode()
            self.reply(200, body)
        else:
            self.reply(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        if self.path != LOGS_PATH:
            self.reply(404, b"not found", "text/plain")
            return
        body = self.read_body(allow_empty=True)
        if body is None:
            return
        with self.lock:
            self.counts["requests"] += 1
            self.counts["bytes"] += len(body)
        # An empty ExportLogsServiceResponse: zero bytes in protobuf, {} in JSON.
        if "json" in (self.headers.get("Content-Type") or ""):
            self.reply(200, b"{}")
        else:
            self.reply(200, b"", "application/x-protobuf")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OTLP/HTTP log sink standing in for Loki")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3100)
    args = parser.parse_args(argv)
    return serve(
        Handler, args.host, args.port, "loki stand-in (NOT Loki: accepts and counts OTLP logs)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
