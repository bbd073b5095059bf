"""Telemetry never takes the service down: SDK disabled exports nothing; a collector that is
absent or hangs costs no failed or slow request."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from .conftest import VALID_RECORD
from .processes import service_pair
from .servers import free_port
from .waiting import wait_until


class _CountingOtlp(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []
    received: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).hits.append(self.path)
        type(self).received.append(
            (self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        )
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


Received = list[tuple[str, dict[str, str], bytes]]


@contextmanager
def otlp_counter() -> Iterator[tuple[str, list[str], Received]]:
    """A bare OTLP/HTTP endpoint that only counts what reaches it."""
    handler = type("Counting", (_CountingOtlp,), {"hits": [], "received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.hits, handler.received
    finally:
        server.shutdown()


def _send(gateway_url: str, n: int, timeout_s: float = 5) -> None:
    """``n`` predictions through the gateway, each answered 200 within ``timeout_s``."""
    with httpx.Client(base_url=gateway_url, timeout=timeout_s) as client:
        for _ in range(n):
            response = client.post("/v1/predict", json={"record": VALID_RECORD})
            assert response.status_code == 200


# The Python exporters 1.45.2 read OTEL_EXPORTER_OTLP_TIMEOUT in seconds (the spec says ms).
EXPORT_TIMEOUT_S = 9
FAST_EXPORT = {
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_METRIC_EXPORT_INTERVAL": "500",
    "OTEL_BSP_SCHEDULE_DELAY": "200",
    "OTEL_BLRP_SCHEDULE_DELAY": "200",
}


def test_sdk_disabled_exports_nothing(tmp_path: Path, model_dir: Path) -> None:
    """A pair with OTEL_SDK_DISABLED=true exports nothing, while, beside it, the control (the
    same setup, enabled, started after it) exports every signal. The control's metric
    exports mark the time: once it has sent several after the traffic, the disabled pair
    has had as many export intervals; both are then stopped (a shutdown flushes too)."""
    endpoints: dict[bool, tuple[list[str], Received]] = {}
    with ExitStack() as running:
        urls = []
        for disabled in (True, False):
            endpoint, hits, received = running.enter_context(otlp_counter())
            endpoints[disabled] = hits, received
            env = {
                **FAST_EXPORT,
                "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=acme",
                "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=staging,team=ml",
            }
            if disabled:
                env["OTEL_SDK_DISABLED"] = "true"
            workdir = tmp_path / ("disabled" if disabled else "control")
            workdir.mkdir()
            pair = service_pair(workdir, env, model_dir, free_port(), free_port())
            urls.append(running.enter_context(pair))
        for url in urls:
            _send(url, 20)
        control = endpoints[False][0]
        rounds = control.count("/v1/metrics") + 3  # several export intervals from now
        wait_until(
            lambda: control.count("/v1/metrics") >= rounds,
            lambda: f"the control's metric exports ({control.count('/v1/metrics')} of {rounds})",
            timeout_s=30,
            poll_s=0.05,
        )
    hits, _ = endpoints[True]
    assert hits == []
    hits, received = endpoints[False]  # the control: the same setup exports every signal
    assert {"/v1/traces", "/v1/metrics", "/v1/logs"} <= set(hits)
    _assert_env_honoured(received)


def _assert_env_honoured(received: list[tuple[str, dict[str, str], bytes]]) -> None:
    """OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES reach the wire."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    assert all(headers.get("x-tenant") == "acme" for _, headers, _ in received)
    services = set()
    for path, _, body in received:
        if path != "/v1/traces":
            continue
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            assert attrs["deployment.environment.name"] == "staging"  # env wins over default
            assert attrs["team"] == "ml"
            assert attrs["service.instance.id"]
            services.add(attrs["service.name"])
    assert services == {"model-service", "gateway"}


def _blackhole() -> tuple[socket.socket, int]:
    """Accepts connections and never answers: the worst collector there is."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock, sock.getsockname()[1]


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize("collector", ["closed port", "hangs"])
def test_requests_stay_fast_without_a_collector(
    tmp_path: Path, model_dir: Path, protocol: str, collector: str
) -> None:
    hole = None
    if collector == "hangs":
        hole, port = _blackhole()
    else:
        port = free_port()
    scheme_port = f"http://127.0.0.1:{port}"
    env = {
        **FAST_EXPORT,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_ENDPOINT": scheme_port,
        # An export that hangs waits this long; a request that waited for one would outlive
        # the client's deadline below. (How fast requests are is measured in bench/.)
        "OTEL_EXPORTER_OTLP_TIMEOUT": str(EXPORT_TIMEOUT_S),
    }
    try:
        with service_pair(tmp_path, env, model_dir, free_port(), free_port()) as url:
            # Exports fail on background threads; the request path never waits for them.
            _send(url, 300, timeout_s=EXPORT_TIMEOUT_S / 3)
    finally:
        if hole is not None:
            hole.close()


def test_sampler_and_service_name_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from modelobs.telemetry import build_telemetry

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "churn-api")
    spans = InMemorySpanExporter()
    telemetry = build_telemetry("model-service", span_exporter=spans)
    with telemetry.tracer.start_as_current_span("work") as span:
        assert not span.is_recording()
    telemetry.tracer_provider.force_flush()
    assert spans.get_finished_spans() == ()
    assert telemetry.resource.attributes["service.name"] == "churn-api"
    telemetry.shutdown()
