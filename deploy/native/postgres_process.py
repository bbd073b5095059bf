"""PostgreSQL as one process of the native stack (`make up REPLICAS=2`).

It starts a throwaway server (deploy/native/postgres.py: initdb and pg_ctl on a fresh
temporary directory, which the unprivileged server user can reach, unlike a root-owned run
directory), creates the stack's database, answers ``GET /`` on a health port once the server
takes connections (the supervisor's ready check is HTTP), and stops the server on SIGTERM
or SIGINT.

pg_ctl detaches the server from our process group, so stopping this process, not signalling
the group, is what stops PostgreSQL; the supervisor's SIGTERM does that.

    python -m deploy.native.postgres_process --port 5433 --health-port 5434 --database modelobs
"""

from __future__ import annotations

import argparse
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

import psycopg

from .postgres import PostgresServer


def _health_handler(url: str) -> type[BaseHTTPRequestHandler]:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                with psycopg.connect(url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                status, body = 200, b"ok\n"
            except psycopg.Error as exc:
                status, body = 503, f"{type(exc).__name__}\n".encode()
            self.send_response(status)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes are not worth a line each

    return Health


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--health-port", type=int, required=True)
    parser.add_argument("--database", default="modelobs")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = PostgresServer(args.port).start()
    try:
        url = server.create_database(args.database)
        print(f"PostgreSQL ready: {url}", flush=True)
        health = ThreadingHTTPServer(("127.0.0.1", args.health_port), _health_handler(url))
        threading.Thread(target=health.serve_forever, daemon=True).start()
        stop.wait()
        health.shutdown()
    finally:
        server.stop()
        print("PostgreSQL stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
