"""Alertmanager webhook receiver (stdlib only), and the small HTTP receiver it is built on.

POST /alerts  one Alertmanager webhook payload (JSON): logged as one JSON line on stdout and
              kept in memory (last --keep payloads).
GET  /alerts  the kept payloads, newest last, as a JSON array.
GET  /healthz 200 "ok".

    python receiver.py --host 0.0.0.0 --port 9099

Stdlib only, one file: docker-compose mounts it into the service image as it is.
``QuietHandler`` and ``serve`` are the skeleton of a tiny receiver: reuse them, do not write
another.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar


class QuietHandler(BaseHTTPRequestHandler):
    """Replies with a body, reads a bounded request body, writes no access log."""

    max_body: ClassVar[int] = 1 << 20
    lock: ClassVar[threading.Lock] = threading.Lock()

    def reply(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self, allow_empty: bool = False) -> bytes | None:
        """The request body; None after answering 400/413 when its length is not allowed."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.max_body:
            self.reply(413, b'{"error":"body too large"}')
            return None
        if length < 0 or (length == 0 and not allow_empty):
            self.reply(400, b'{"error":"bad length"}')
            return None
        return self.rfile.read(length)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(handler: type[BaseHTTPRequestHandler], host: str, port: int, banner: str) -> int:
    """Serve until SIGTERM or Ctrl-C."""
    server = ThreadingHTTPServer((host, port), handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"{banner} on {host}:{port}", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


class AlertHandler(QuietHandler):
    store: ClassVar[deque] = deque(maxlen=200)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self.reply(200, b"ok", "text/plain")
        elif self.path == "/alerts":
            with self.lock:
                body = json.dumps(list(self.store)).encode()
            self.reply(200, body)
        else:
            self.reply(404, b'{"error":"not found"}')

    def do_POST(self) -> None:
        if self.path != "/alerts":
            self.reply(404, b'{"error":"not found"}')
            return
        body = self.read_body()
        if body is None:
            return
        try:
            payload = json.loads(body)
        except ValueError:
            self.reply(400, b'{"error":"invalid json"}')
            return
        with self.lock:
            self.store.append(payload)
        for alert in payload.get("alerts", []):
            line = {
                "event": "alert",
                "status": alert.get("status"),
                "alertname": alert.get("labels", {}).get("alertname"),
                "labels": alert.get("labels", {}),
                "summary": alert.get("annotations", {}).get("summary"),
                "startsAt": alert.get("startsAt"),
            }
            print(json.dumps(line), flush=True)
        self.reply(200, b'{"status":"ok"}')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Alertmanager webhook receiver")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9099)
    parser.add_argument("--keep", type=int, default=200)
    args = parser.parse_args(argv)
    AlertHandler.store = deque(maxlen=args.keep)
    return serve(AlertHandler, args.host, args.port, "alert webhook receiver")


if __name__ == "__main__":
    raise SystemExit(main())
