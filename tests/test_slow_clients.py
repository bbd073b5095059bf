"""Slow clients against a real `modelobs serve model` process: idle connections, a request
head sent a byte at a time and a body that stalls are each cut off by their deadline (closed,
or 408 and closed), counted and logged, while a healthy client keeps being served.

The trickling client is paced by the healthy one (one more head byte per healthy answer), so
the test waits on conditions with a deadline, never on a fixed sleep. Cost: one model service
process with 1 s deadlines, about 5 s of wall time.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from deploy.native.components import SPECS, Ports, StackConfig, resolve
from deploy.native.supervisor import Supervisor

from .conftest import VALID_RECORD
from .servers import free_port

IDLE_CONNECTIONS = 50
DEADLINE_S = 60  # for the whole scenario; the server's deadlines are 1 s


@dataclass
class Server:
    url: str
    port: int
    log: Path


@pytest.fixture
def server(model_dir: Path, tmp_path: Path) -> Iterator[Server]:
    """The model service as the native stack runs it, alone, with 1 s deadlines."""
    port = free_port()
    cfg = StackConfig(run_dir=tmp_path, ports=Ports(model=port))
    env = {
        "MODELOBS_MODEL_DIR": str(model_dir),
        "MODELOBS_PREDICTION_DB": str(tmp_path / "predictions.db"),
        "MODELOBS_HEADER_TIMEOUT_S": "1",
        "MODELOBS_BODY_TIMEOUT_S": "1",
        "MODELOBS_KEEPALIVE_TIMEOUT_S": "1",
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    supervisor = Supervisor(tmp_path)
    supervisor.start(
        [resolve(SPECS["model-service"], cfg, env=env, depends_on=())], say=lambda _m: None
    )
    try:
        yield Server(cfg.url(port), port, tmp_path / "model-service.log")
    finally:
        supervisor.stop(say=lambda _m: None)


@dataclass
class SlowClient:
    """One raw socket and what the server did to it."""

    sock: socket.socket
    received: bytes = b""
    closed: bool = False
    pending: bytes = field(default=b"")

    def poll(self) -> None:
        """Reads what the server sent, without blocking; notes when it closed."""
        while not self.closed and select.select([self.sock], [], [], 0)[0]:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
            self.received += chunk

    def trickle(self) -> None:
        """Sends the next byte of ``pending``, if the server still listens."""
        if self.pending and not self.closed:
            try:
                self.sock.send(self.pending[:1])
            except (BrokenPipeError, ConnectionResetError):
                self.closed = True
            self.pending = self.pending[1:]


def connect(port: int, first: bytes = b"") -> SlowClient:
    sock = socket.create_connection(("127.0.0.1", port))
    if first:
        sock.sendall(first)
    return SlowClient(sock)


def metric(exposition: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in exposition.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_slow_clients_are_cut_off_and_counted_while_healthy_ones_are_served(
    server: Server,
) -> None:
    body = json.dumps({"record": VALID_RECORD}).encode()
    head = (
        f"POST /predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    idle = [connect(server.port) for _ in range(IDLE_CONNECTIONS)]
    stalled_body = connect(server.port, head + body[:10])
    trickling = connect(server.port)
    # One byte per healthy answer: a head of thousands of bytes cannot complete in 1 s.
    trickling.pending = head.replace(b"\r\n\r\n", b"\r\nx-padding: " + b"p" * 4000 + b"\r\n\r\n")
    slow = [*idle, stalled_body, trickling]

    healthy_answers: list[int] = []
    deadline = time.monotonic() + DEADLINE_S
    with httpx.Client(
        base_url=server.url, limits=httpx.Limits(max_keepalive_connections=0), timeout=10
    ) as client:
        while not all(c.closed for c in slow) and time.monotonic() < deadline:
            response = client.post("/predict", json={"record": VALID_RECORD})
            healthy_answers.append(response.status_code)
            trickling.trickle()
            for c in slow:
                c.poll()
        metrics_text = client.get("/metrics").text
        last = client.post("/predict", json={"record": VALID_RECORD})
        still_healthy = last.status_code
        assert "server" not in last.headers  # no server software named
    for c in slow:
        c.sock.close()

    print(
        f"\nslow clients: {len(slow)} cut off; healthy answers meanwhile: {len(healthy_answers)}; "
        f"trickled head bytes: {len(head) + 4015 - len(trickling.pending)}"
    )
    open_left = sum(not c.closed for c in slow)
    assert open_left == 0, f"{open_left} slow connection(s) still open after {DEADLINE_S}s"
    assert healthy_answers and set(healthy_answers) == {200}, healthy_answers
    assert still_healthy == 200
    # Idle connections are closed without an answer; the trickled head gets a 408 (unless
    # its last byte raced the close); the stalled body gets the 408 JSON error.
    assert all(c.received == b"" for c in idle)
    assert stalled_body.received.startswith(b"HTTP/1.1 408 "), stalled_body.received[:200]
    error = json.loads(stalled_body.received.split(b"\r\n\r\n", 1)[1])
    assert error == {
        "error": {
            "reason": "request_timeout",
            "field": "body",
            "message": "request body not received within 1 s",
        }
    }
    if trickling.received:
        assert trickling.received.startswith(b"HTTP/1.1 408 "), trickling.received[:200]
        assert b'"field":"headers"' in trickling.received.replace(b" ", b"")

    # Counted, by phase, and the stalled body as a rejection like any other bad input.
    name = "modelobs_http_client_timeouts_total"
    assert metric(metrics_text, name, http_client_timeout_phase="idle") >= IDLE_CONNECTIONS
    assert metric(metrics_text, name, http_client_timeout_phase="headers") >= 1
    rejected = metric(
        metrics_text, "modelobs_validation_failures_total", validation_reason="request_timeout"
    )
    assert rejected == 1
    # And logged.
    events = [json.loads(line).get("event") for line in _json_lines(server.log)]
    assert events.count("client_timeout") >= IDLE_CONNECTIONS + 1
    assert "request_rejected" in events


def _json_lines(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if line.startswith("{")]
