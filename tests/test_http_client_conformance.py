"""Our client instrumentation (telemetry/http_client.py) against its oracle, the httpx
instrumentation's ``instrument_client``: the same gateway requests (answers, failures,
retries, incoming parents, a suppressed probe) and the same direct client calls, once with
the library (MODELOBS_HTTP_INSTRUMENTATION=library) and once with ours, give the same client
spans, propagation headers and ``http.client.request.duration``; the one declared
difference (the instrumentation scope) is asserted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.trace import SpanKind

from modelobs.apps import gateway
from modelobs.settings import Settings
from modelobs.telemetry.http_client import ClientTelemetryTransport, instrument_client

from .servers import captured, free_port
from .test_http_conformance import span_view

IMPLEMENTATIONS = ("library", "modelobs")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
MODEL_URL = "http://model.test:8000"
BODY = {"record": {"x": 1}}
# (idempotency key, extra headers): what the scripted model service does is in the key.
GATEWAY_REQUESTS: list[tuple[str, dict[str, str]]] = [
    ("ok-1", {}),
    ("reject-1", {}),  # 422 answered
    ("fail-1", {}),  # 500 answered: the gateway answers 502
    ("refuse-once-1", {}),  # connection refused, retried, answered
    ("timeout-1", {}),  # read timeout: 504 at once
    ("drop-once-1", {}),  # read error (it may have arrived): retried on the same replica
    ("refuse-always-1", {}),  # refused three times: 503
    ("ok-sampled", {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "baggage": "tenant=acme"}),
    ("ok-unsampled", {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"}),
]
GATEWAY_STATUSES = [200, 422, 502, 200, 504, 200, 503, 200, 200]


class ScriptedModel:
    """A model service as a mock transport: what it does with a request depends on the
    request's idempotency key; it keeps every request's headers."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, httpx.Headers]] = []
        self.attempts: dict[str, int] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        key = request.headers.get("idempotency-key", "")
        self.seen.append((request.method, request.url.path, request.headers))
        attempt = self.attempts[key] = self.attempts.get(key, 0) + 1
        if key.startswith("refuse-always") or (key.startswith("refuse-once") and attempt == 1):
            raise httpx.ConnectError("connection refused", request=request)
        if key.startswith("drop-once") and attempt == 1:
            raise httpx.ReadError("connection reset", request=request)
        if key.startswith("timeout"):
            raise httpx.ReadTimeout("read timed out", request=request)
        status = 422 if key.startswith("reject") else 500 if key.startswith("fail") else 200
        return httpx.Response(status, json={"key": key}, headers={"x-model": "m"})


def client_view(span: Any, spans_by_id: dict[int, Any]) -> dict[str, Any]:
    """What the two must agree on (the server test's view): ids only through the parent's
    name and remoteness."""
    view = span_view(span)
    parent = span.parent
    parent_span = spans_by_id.get(parent.span_id) if parent else None
    view["parent"] = (
        parent_span.name if parent_span else None,
        parent.is_remote if parent else None,
    )
    del view["trace_id"]
    return view


def client_metrics(points: dict[str, tuple[Any, list[Any]]]) -> dict[str, Any]:
    """http.client.* → unit, kind, bucket bounds, each series' attributes and count."""
    found = {}
    for name, (metric, data) in points.items():
        if name.startswith("http.client."):
            series = sorted((sorted(p.attributes.items()), p.count) for p in data)
            bounds = {tuple(p.explicit_bounds) for p in data}
            found[name] = (metric.unit, type(metric.data).__name__, bounds, series)
    return found


def split_failures(found: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """Client metrics without the series of attempts that failed with no answer (an
    exception's class as ``error.type``: ours records them, the library does not), and
    those series."""
    if "http.client.request.duration" not in found:
        return found, []
    unit, kind, bounds, series = found["http.client.request.duration"]
    failed = [s for s in series if not dict(s[0]).get("error.type", "0").isdigit()]
    answered = [s for s in series if s not in failed]
    rest = dict(found)
    if answered:
        rest["http.client.request.duration"] = (unit, kind, bounds, answered)
    else:
        del rest["http.client.request.duration"]
    return rest, failed


def run_gateway(implementation: str, tmp_path: Path, model_url: str = MODEL_URL) -> dict[str, Any]:
    """The gateway app in process, its upstream the scripted model (or, for a URL of a
    closed port, the real transport), the requests in order, then the readiness probe."""
    cap = captured("gateway")
    model = ScriptedModel()
    settings = Settings(
        model_url=model_url,
        prediction_db=tmp_path / "p.db",
        http_instrumentation=implementation,  # type: ignore[arg-type]
        upstream_skip_s=0.001,
    )
    transport = httpx.MockTransport(model) if model_url == MODEL_URL else None
    app = gateway.create_app(settings, cap.telemetry, transport=transport)
    requests = GATEWAY_REQUESTS if transport else [("refused-for-real", {})]

    async def send_all() -> tuple[list[int], int]:
        async with app.router.lifespan_context(app):
            asgi = httpx.ASGITransport(app=app, client=("10.1.2.3", 40001))
            async with httpx.AsyncClient(transport=asgi, base_url="http://gw.test") as client:
                statuses = [
                    (
                        await client.post(
                            "/v1/predict", json=BODY, headers={"idempotency-key": key, **extra}
                        )
                    ).status_code
                    for key, extra in requests
                ]
                probe = (await client.get("/readyz")).status_code
        return statuses, probe

    statuses, probe = asyncio.run(send_all())
    servers = sum(1 for _, extra in requests if not extra.get("traceparent", "").endswith("-00"))
    spans = cap.finished_spans(servers=servers)
    metrics = cap.metric_points()
    cap.telemetry.shutdown()
    return {
        "statuses": statuses,
        "probe": probe,
        "spans": spans,
        "metrics": metrics,
        "model": model,
    }


def traces(spans: list[Any]) -> list[list[dict[str, Any]]]:
    """Client spans grouped by trace, traces in the order their server spans ended."""
    by_id = {s.context.span_id: s for s in spans}
    order = [s.context.trace_id for s in spans if s.kind == SpanKind.SERVER]
    return [
        [
            client_view(s, by_id)
            for s in spans
            if s.kind == SpanKind.CLIENT and s.context.trace_id == trace_id
        ]
        for trace_id in order
    ]


def test_gateway_client_spans_and_duration_equal_the_library(tmp_path: Path) -> None:
    lib = run_gateway("library", tmp_path / "lib")
    ours = run_gateway("modelobs", tmp_path / "ours")
    assert lib["statuses"] == ours["statuses"] == GATEWAY_STATUSES
    assert lib["probe"] == ours["probe"] == 200

    lib_traces, our_traces = traces(lib["spans"]), traces(ours["spans"])
    assert our_traces == lib_traces
    # One client span per attempt, under the gateway's server span; the unsampled request
    # has none recorded (8 traces for 9 requests).
    assert [len(t) for t in our_traces] == [1, 1, 1, 2, 1, 2, 3, 1]
    ok, reject, fail, refuse_once, timeout, drop_once, refuse_always, sampled = our_traces
    assert ok[0]["name"] == "POST" and ok[0]["kind"] == SpanKind.CLIENT
    assert ok[0]["parent"] == ("POST /v1/predict", False)
    assert ok[0]["attributes"] == {
        "http.request.method": "POST",
        "url.full": f"{MODEL_URL}/predict",
        "server.address": "model.test",
        "network.peer.address": "model.test",
        "server.port": 8000,
        "network.peer.port": 8000,
        "http.response.status_code": 200,
        "network.protocol.version": "1.1",
    }
    assert ok[0]["status"][0].name == "UNSET" and ok[0]["events"] == []
    assert reject[0]["status"][0].name == "ERROR"  # a client span: 4xx is an error
    assert reject[0]["attributes"]["error.type"] == "422"
    assert fail[0]["attributes"]["error.type"] == "500"
    refused, answered = refuse_once
    assert refused["attributes"]["error.type"] == "ConnectError"
    assert refused["status"] == (refused["status"][0], "ConnectError: connection refused")
    assert [e[1]["exception.type"] for e in refused["events"]] == ["httpx.ConnectError"]
    assert "http.response.status_code" not in refused["attributes"]
    assert answered["attributes"]["http.response.status_code"] == 200
    assert timeout[0]["attributes"]["error.type"] == "ReadTimeout"
    assert drop_once[0]["attributes"]["error.type"] == "ReadError"
    assert [s["attributes"]["error.type"] for s in refuse_always] == ["ConnectError"] * 3
    assert sampled[0]["parent"] == ("POST /v1/predict", False)
    sampled_server = next(
        s for s in ours["spans"] if s.kind == SpanKind.SERVER and s.parent is not None
    )
    assert format(sampled_server.context.trace_id, "032x") == TRACE_ID

    # Propagation: every attempt carries its own client span's context (flags as sampled),
    # the unsampled one carries 00, incoming baggage goes on, the probe carries nothing.
    for result in (lib, ours):
        clients = [s for s in result["spans"] if s.kind == SpanKind.CLIENT]
        sent = [h for method, _, h in result["model"].seen if method == "POST"]
        context = [h["traceparent"].split("-") for h in sent]
        sampled_parents = [span for _, _, span, flags in context if int(flags, 16) & 1]
        assert sorted(sampled_parents) == sorted(format(s.context.span_id, "016x") for s in clients)
        unsampled = [h for h in sent if h["idempotency-key"] == "ok-unsampled"]
        assert [h["traceparent"][:35] for h in unsampled] == [f"00-{TRACE_ID}"]
        assert unsampled[0]["traceparent"].endswith("-00")
        assert [h.get("baggage") for h in sent if h["idempotency-key"] == "ok-sampled"] == [
            "tenant=acme"
        ]
        (probe,) = [h for method, _, h in result["model"].seen if method == "GET"]
        assert "traceparent" not in probe  # suppressed: no span, nothing injected
    assert len(ours["model"].seen) == len(lib["model"].seen) == 14  # 13 attempts, 1 probe

    answered, failed = split_failures(client_metrics(ours["metrics"]))
    assert answered == client_metrics(lib["metrics"])
    (unit, kind, bounds, series) = answered["http.client.request.duration"]
    assert (unit, kind) == ("s", "Histogram")
    assert bounds == {
        (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
    }
    base = [
        ("http.request.method", "POST"),
        ("network.protocol.version", "1.1"),
        ("server.address", "model.test"),
        ("server.port", 8000),
    ]

    def labels(status: int, error: str | None = None) -> list[tuple[str, Any]]:
        extra = [("error.type", error)] if error else []
        return sorted([*base, *extra, ("http.response.status_code", status)])

    # As the library for answered attempts: the unsampled request counted, the suppressed
    # probe not.
    assert series == sorted([(labels(200), 5), (labels(422, "422"), 1), (labels(500, "500"), 1)])
    # Beyond it: every attempt that failed with no answer, by the exception's class (no
    # status code or protocol version: nothing was answered).
    target = [("http.request.method", "POST"), ("server.address", "model.test")]

    def failure(error: str) -> list[tuple[str, Any]]:
        return sorted([*target, ("error.type", error), ("server.port", 8000)])

    assert failed == sorted(
        [(failure("ConnectError"), 4), (failure("ReadError"), 1), (failure("ReadTimeout"), 1)]
    )


def test_a_refused_connection_for_real_gives_the_same_spans(tmp_path: Path) -> None:
    """The real transport, a closed port: the error httpx raises there, three attempts."""
    dead = f"http://127.0.0.1:{free_port()}"
    views = {}
    for implementation in IMPLEMENTATIONS:
        result = run_gateway(implementation, tmp_path / implementation, model_url=dead)
        assert result["statuses"] == [503]
        (trace,) = traces(result["spans"])
        views[implementation] = trace
        answered, failed = split_failures(client_metrics(result["metrics"]))
        assert answered == {}
        assert [count for _, count in failed] == ([3] if implementation == "modelobs" else [])
    assert views["modelobs"] == views["library"]
    assert [v["attributes"]["error.type"] for v in views["modelobs"]] == ["ConnectError"] * 3
    assert views["modelobs"][0]["attributes"]["url.full"] == f"{dead}/predict"


def instrumented(
    answer: Callable[[httpx.Request], httpx.Response], implementation: str, cap: Any
) -> httpx.AsyncClient:
    """A client on a mock transport answering with ``answer``, instrumented one way or the
    other with ``cap``'s providers."""
    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    instrument_client(
        client,
        implementation,  # type: ignore[arg-type]
        tracer_provider=cap.telemetry.tracer_provider,
        meter_provider=cap.telemetry.meter_provider,
    )
    return client


def direct_calls(
    implementation: str, calls: list[tuple[str, str, dict[str, str]]]
) -> tuple[list[dict[str, Any]], dict[str, Any], list[Any]]:
    """Requests through a bare AsyncClient instrumented one way or the other."""
    cap = captured("client")
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"x-answer": "yes", "set-cookie": "s=1"})

    async def send() -> None:
        async with instrumented(answer, implementation, cap) as client:
            for method, url, headers in calls:
                await client.request(method, url, headers=headers)

    asyncio.run(send())
    cap.telemetry.tracer_provider.force_flush()
    spans = list(cap.spans.get_finished_spans())
    by_id = {s.context.span_id: s for s in spans}
    views = [client_view(s, by_id) for s in spans]
    metrics = client_metrics(cap.metric_points())
    scopes = [s.instrumentation_scope.name for s in spans]
    cap.telemetry.shutdown()
    return views, metrics, [*scopes, seen]


DIRECT_CALLS: list[tuple[str, str, dict[str, str]]] = [
    ("GET", "http://user:pw@svc.test/items?sig=abc&page=2", {"x-request-id": "r-1"}),
    ("BREW", "http://svc.test:9000/pot", {"authorization": "Bearer secret"}),
    ("GET", "https://svc.test/", {}),
    ("GET", "http://svc.test/skip/this", {}),
]


def test_direct_calls_equal_the_library_with_its_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redacted URLs, an unknown method, default ports, captured and sanitised headers, an
    excluded URL: the library's variables, honoured by both."""
    monkeypatch.setenv(
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST", "x-request-id,authorization"
    )
    monkeypatch.setenv(
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE", "x-answer,set-cookie"
    )
    monkeypatch.setenv(
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS", "authorization,set-cookie"
    )
    monkeypatch.setenv("OTEL_PYTHON_HTTPX_EXCLUDED_URLS", "/skip/")
    lib_views, lib_metrics, lib_rest = direct_calls("library", DIRECT_CALLS)
    our_views, our_metrics, our_rest = direct_calls("modelobs", DIRECT_CALLS)
    assert our_views == lib_views
    assert our_metrics == lib_metrics
    assert len(our_views) == 3  # the excluded URL is not traced
    redacted, brewed, default_port = (v["attributes"] for v in our_views)
    assert redacted["url.full"] == "http://REDACTED:REDACTED@svc.test/items?sig=REDACTED&page=2"
    assert redacted["http.request.header.x_request_id"] == ("r-1",)
    assert redacted["http.response.header.x_answer"] == ("yes",)
    assert redacted["http.response.header.set_cookie"] == ("[REDACTED]",)
    assert "server.port" not in redacted  # no port in the URL, none on the span
    assert our_views[1]["name"] == "HTTP"
    assert brewed["http.request.method"] == "_OTHER"
    assert brewed["http.request.method_original"] == "BREW"
    assert brewed["http.request.header.authorization"] == ("[REDACTED]",)
    assert default_port["url.full"] == "https://svc.test/"
    # Declared difference: the instrumentation scope.
    assert set(lib_rest[:3]) == {"opentelemetry.instrumentation.httpx"}
    assert set(our_rest[:3]) == {"modelobs"}
    # The excluded request went out without trace context; the others with it.
    sent: list[httpx.Request] = our_rest[3]
    assert ["traceparent" in r.headers for r in sent] == [True, True, True, False]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_what_the_client_transport_wraps_runs_inside_the_client_span(
    implementation: str,
) -> None:
    """The gateway's fault-injection hop sits under the instrumentation: whatever the
    client's own transport does sees the attempt's client span as current."""
    cap = captured("client")
    current: list[Any] = []

    def answer(request: httpx.Request) -> httpx.Response:
        from opentelemetry import trace

        current.append(trace.get_current_span().get_span_context().span_id)
        return httpx.Response(204)

    async def send() -> None:
        async with instrumented(answer, implementation, cap) as client:
            await client.get("http://svc.test/")

    asyncio.run(send())
    cap.telemetry.tracer_provider.force_flush()
    (span,) = cap.spans.get_finished_spans()
    assert current == [span.context.span_id]
    assert isinstance(
        httpx.AsyncClient()._transport, httpx.AsyncHTTPTransport
    )  # nothing global was changed
    cap.telemetry.shutdown()


def test_ours_is_what_the_gateway_installs_by_default(tmp_path: Path) -> None:
    settings = Settings(prediction_db=tmp_path / "p.db")
    assert settings.http_instrumentation == "modelobs"
    cap = captured("gateway")
    upstream = gateway.Upstream(settings, cap.telemetry)
    (client,) = upstream.clients.values()
    assert isinstance(client._transport, ClientTelemetryTransport)
    library = gateway.Upstream(
        Settings(prediction_db=tmp_path / "p.db", http_instrumentation="library"), cap.telemetry
    )
    (client,) = library.clients.values()
    assert not isinstance(client._transport, ClientTelemetryTransport)
    assert getattr(client, "_is_instrumented_by_opentelemetry", False)
    asyncio.run(upstream.aclose())
    asyncio.run(library.aclose())
    cap.telemetry.shutdown()


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_duration_exemplar_names_the_attempts_client_span(
    implementation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recorded while the client span is current, in both: the exemplar names it."""
    monkeypatch.setenv("OTEL_METRICS_EXEMPLAR_FILTER", "trace_based")
    cap = captured("client")

    async def send() -> None:
        async with instrumented(lambda _r: httpx.Response(200), implementation, cap) as client:
            await client.get("http://svc.test:9000/")

    asyncio.run(send())
    cap.telemetry.tracer_provider.force_flush()
    (span,) = cap.spans.get_finished_spans()
    _, points = cap.metric_points()["http.client.request.duration"]
    exemplars = [e for p in points for e in p.exemplars]
    assert [(e.trace_id, e.span_id) for e in exemplars] == [
        (span.context.trace_id, span.context.span_id)
    ]
    cap.telemetry.shutdown()
