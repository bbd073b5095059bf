"""Minimal Alertmanager webhook receiver for the docker-compose stack (stdlib only).

POST /alerts  one Alertmanager webhook payload (JSON): logged as one JSON line on stdout and
              kept in memory (last --keep payloads).
GET  /alerts  the kept payloads, newest last, as a JSON array.
GET  /healthz 200 "ok".

    python receiver.py --host 0.0.0.0 --port 9099
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

MAX_BODY = 1 << 20


class Handler(BaseHTTPRequestHandler):
    store: ClassVar[deque] = deque(maxlen=200)
    lock: ClassVar[threading.Lock] = threading.Lock()

    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._send(200, b"ok", "text/plain")
        elif self.path == "/alerts":
            with self.lock:
                body = json.dumps(list(self.store)).encode()
            self._send(200, body)
        else:
            self._send(404, b'{"error":"not found"}')

    def do_POST(self) -> None:
        if self.path != "/alerts":
            self._send(404, b'{"error":"not found"}')
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY:
            self._send(413 if length > MAX_BODY else 400, b'{"error":"bad length"}')
            return
        try:
            payload = json.loads(self.rfile.read(length))
        except ValueError:
            self._send(400, b'{"error":"invalid json"}')
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
        self._send(200, b'{"status":"ok"}')

    def log_message(self, format: str, *args: object) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Alertmanager webhook receiver")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9099)
    parser.add_argument("--keep", type=int, default=200)
    args = parser.parse_args(argv)
    Handler.store = deque(maxlen=args.keep)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"alert webhook receiver on {args.host}:{args.port}", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
