"""Our server middleware against its oracle, the FastAPI instrumentation: the same requests
through the same app skeleton, once instrumented by the library (configured as
MODELOBS_HTTP_INSTRUMENTATION=library does) and once by ours, must give the same spans and
metrics, except for the differences telemetry/http_server.py declares."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from starlette.middleware.errors import ServerErrorMiddleware

from modelobs.apps.errors import (
    Reason,
    Rejection,
    error_body,
    guarded,
    install_error_handlers,
)
from modelobs.apps.service_app import create_service_app
from modelobs.settings import Settings, get_settings
from modelobs.telemetry import build_telemetry, current_telemetry, http_views
from modelobs.telemetry.http_server import ServerTelemetryMiddleware
from modelobs.telemetry.server_instrumentation import DEFAULT_EXCLUDED_URLS, instrument_server

from .servers import Captured, captured

IMPLEMENTATIONS = ("library", "modelobs")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
# (method, path, headers): success, 4xx (parameter, rejection, unknown path), 5xx (answered,
# handled exception, unhandled exception), methods (unknown, not allowed), query strings
# (plain, with a sensitive parameter), incoming trace context, an excluded probe.
REQUESTS: list[tuple[str, str, dict[str, str]]] = [
    ("GET", "/items/1", {"x-request-id": "r-1", "authorization": "Bearer secret"}),
    ("GET", "/items/1?page=2&q=a%20b", {}),
    ("GET", "/items/1?sig=abc&page=2", {}),
    ("GET", "/items/abc", {}),
    ("POST", "/items", {}),
    ("GET", "/nowhere", {}),
    ("GET", "/unavailable", {}),
    ("GET", "/guarded", {}),
    ("GET", "/boom", {}),
    ("BREW", "/items/1", {}),
    ("DELETE", "/items/1", {}),
    (
        "GET",
        "/items/2",
        {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "baggage": "tenant=acme"},
    ),
    ("GET", "/healthz", {}),
]
SPAN_NAMES = [
    "GET /items/{item_id}",
    "GET /items/{item_id}",
    "GET /items/{item_id}",
    "GET /items/{item_id}",
    "POST /items",
    "GET",
    "GET /unavailable",
    "GET /guarded",
    "GET /boom",
    "HTTP /items/{item_id}",
    "DELETE /items/{item_id}",
    "GET /items/{item_id}",
]
CAPTURE_ENV = {
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": "x-request-id,authorization",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE": "content-type",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS": "authorization",
}


class WorkFailed(Exception):
    pass


def make_app(cap: Captured, implementation: str, **options: Any) -> FastAPI:
    """The service skeleton (error handlers, probe, instrumentation) with test routes;
    with ``options`` (hooks, ...) the same handlers and routes, instrumented with them."""

    @asynccontextmanager
    async def nothing() -> AsyncIterator[None]:
        yield

    if options:
        app = FastAPI()
        install_error_handlers(app, cap.telemetry)
        instrument_server(app, cap.telemetry, implementation, **options)
    else:
        app = create_service_app("conformance", cap.telemetry, False, nothing, implementation)

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.post("/items")
    async def create_item() -> None:
        raise Rejection(Reason.MISSING_FIELD, "name", "required")

    @app.get("/unavailable")
    async def unavailable() -> JSONResponse:
        return JSONResponse(error_body("upstream_unavailable", "down"), status_code=503)

    @app.get("/guarded", response_model=None)
    async def handled() -> Any:
        async def work() -> None:
            raise WorkFailed("nope")

        return await guarded(work, "work failed")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    return app


async def send_all(app: FastAPI, requests: list[tuple[str, str, dict[str, str]]]) -> list[int]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("10.1.2.3", 40001))
    headers = {"user-agent": "conformance-test"}
    async with httpx.AsyncClient(transport=transport, base_url="http://svc.test:8000") as client:
        return [
            (await client.request(method, path, headers={**headers, **extra})).status_code
            for method, path, extra in requests
        ]


def run(implementation: str, requests: list[tuple[str, str, dict[str, str]]], **options: Any):
    cap = captured("conformance")
    statuses = asyncio.run(send_all(make_app(cap, implementation, **options), requests))
    servers = sum(1 for _, path, _ in requests if path != "/healthz")
    spans = [s for s in cap.finished_spans(servers=servers) if s.kind == SpanKind.SERVER]
    metrics = cap.metric_points()
    cap.telemetry.shutdown()
    return statuses, spans, metrics


def span_view(span: Any) -> dict[str, Any]:
    """Everything the two must agree on (ids only where they come from the request)."""
    parent = span.parent
    return {
        "name": span.name,
        "kind": span.kind,
        "status": (span.status.status_code, span.status.description),
        "attributes": dict(span.attributes),
        "events": [
            (e.name, {k: v for k, v in e.attributes.items() if k != "exception.stacktrace"})
            for e in span.events
        ],
        "parent": (format(parent.span_id, "016x"), parent.is_remote) if parent else None,
        "trace_id": format(span.context.trace_id, "032x") if parent else None,
    }


def http_metrics(points: dict[str, tuple[Any, list[Any]]]) -> dict[str, Any]:
    """Name → unit, kind, bucket bounds, and each series' attributes with its count or
    value (the app's own modelobs.* instruments left out)."""
    found = {}
    for name, (metric, data) in points.items():
        if not name.startswith("http."):
            continue
        series = sorted(
            (sorted(p.attributes.items()), getattr(p, "count", None) or getattr(p, "value", 0))
            for p in data
        )
        bounds = {tuple(getattr(p, "explicit_bounds", ())) for p in data}
        found[name] = (metric.unit, type(metric.data).__name__, bounds, series)
    return found


@pytest.fixture
def capture_headers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in CAPTURE_ENV.items():
        monkeypatch.setenv(name, value)
    yield


@pytest.mark.parametrize("active_requests", [False, True], ids=["shipped-views", "active-on"])
def test_ours_gives_what_the_library_gives(
    capture_headers: None, monkeypatch: pytest.MonkeyPatch, active_requests: bool
) -> None:
    if active_requests:  # the one switch: off the dropped list, both implementations export it
        monkeypatch.setattr(
            http_views,
            "UNUSED_HTTP_SERVER_INSTRUMENTS",
            http_views.UNUSED_HTTP_SERVER_INSTRUMENTS - {"http.server.active_requests"},
        )
    lib_status, lib_spans, lib_metrics = run("library", REQUESTS)
    our_status, our_spans, our_metrics = run("modelobs", REQUESTS)

    assert (
        lib_status
        == our_status
        == [200, 200, 200, 422, 422, 404, 503, 500, 500, 405, 405, 200, 200]
    )
    assert [s.name for s in lib_spans] == SPAN_NAMES  # the probe is excluded by both
    assert len(our_spans) == len(lib_spans)
    for (method, path, _), lib, ours in zip(REQUESTS, lib_spans, our_spans, strict=False):
        expected, got = span_view(lib), span_view(ours)
        # Declared differences: server.address without the port, sensitive query redacted.
        lib_attributes, our_attributes = expected.pop("attributes"), got.pop("attributes")
        assert lib_attributes.pop("server.address") == "svc.test:8000"
        assert our_attributes.pop("server.address") == "svc.test"
        if "sig=" in path:
            assert lib_attributes.pop("url.query") == "sig=abc&page=2"
            assert our_attributes.pop("url.query") == "sig=REDACTED&page=2"
        assert our_attributes == lib_attributes, f"{method} {path}"
        assert got == expected, f"{method} {path}"

    ours = [span_view(s) for s in our_spans]  # in REQUESTS order
    first = ours[0]["attributes"]
    assert first["http.request.header.authorization"] == ("[REDACTED]",)
    assert first["http.request.header.x_request_id"] == ("r-1",)
    assert first["http.response.header.content_type"] == ("application/json",)
    assert first["http.route"] == "/items/{item_id}" and first["network.protocol.version"] == "1.1"
    assert ours[1]["attributes"]["url.query"] == "page=2&q=a%20b"
    assert ours[3]["status"][0].name == "UNSET"  # 4xx: not a server error
    assert "http.route" not in ours[5]["attributes"]  # unknown path: no route
    assert ours[6]["attributes"]["error.type"] == "503"
    assert ours[7]["attributes"]["error.type"] == "500"  # the code, not the handler's name
    assert [e[1]["exception.type"] for e in ours[7]["events"]] == [f"{__name__}.WorkFailed"]
    assert ours[8]["status"][0].name == "ERROR"
    assert [e[1]["exception.type"] for e in ours[8]["events"]] == ["RuntimeError"]
    assert ours[9]["attributes"]["http.request.method"] == "_OTHER"
    assert ours[9]["attributes"]["http.request.method_original"] == "BREW"
    assert ours[11]["trace_id"] == TRACE_ID and ours[11]["parent"] == (PARENT_ID, True)

    assert http_metrics(our_metrics) == http_metrics(lib_metrics)
    names = set(http_metrics(our_metrics))
    expected_names = {"http.server.request.duration"}
    if active_requests:
        expected_names.add("http.server.active_requests")
        _, points = our_metrics["http.server.active_requests"]
        assert {p.value for p in points} == {0}  # every request counted in and out
    assert names == expected_names
    _, points = our_metrics["http.server.request.duration"]
    assert sum(p.count for p in points) == len(SPAN_NAMES)
    assert {frozenset(p.attributes) for p in points} >= {
        frozenset(
            {
                "http.request.method",
                "http.route",
                "http.response.status_code",
                "network.protocol.version",
                "url.scheme",
                "error.type",
            }
        )
    }


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_excluded_urls_come_from_the_library_variable(
    monkeypatch: pytest.MonkeyPatch, implementation: str
) -> None:
    """OTEL_PYTHON_FASTAPI_EXCLUDED_URLS replaces our default (the probes)."""
    assert DEFAULT_EXCLUDED_URLS == "/healthz$,/readyz$"
    monkeypatch.setenv("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "/items/7$")
    requests = [("GET", "/items/7", {}), ("GET", "/healthz", {}), ("GET", "/items/8", {})]
    cap = captured("conformance")
    asyncio.run(send_all(make_app(cap, implementation), requests))
    names = [s.name for s in cap.finished_spans(servers=2)]
    cap.telemetry.shutdown()
    assert sorted(names) == ["GET /healthz", "GET /items/{item_id}"]


def hook(span: Any, scope: dict[str, Any]) -> None:
    span.set_attribute("test.hooked_path", scope["path"])
    if scope["path"] == "/items/9":
        raise ValueError("hook failed")


def test_server_request_hook_runs_in_both_and_never_fails_a_request() -> None:
    requests = [("GET", "/items/1", {}), ("GET", "/items/9", {})]
    views = {}
    for implementation in IMPLEMENTATIONS:
        cap = captured("conformance")
        statuses = asyncio.run(
            send_all(make_app(cap, implementation, server_request_hook=hook), requests)
        )
        assert statuses == [200, 200]
        views[implementation] = [span_view(s) for s in cap.finished_spans(servers=2)]
        cap.telemetry.shutdown()
    for view in views.values():
        view_attributes = [v["attributes"]["test.hooked_path"] for v in view]
        assert view_attributes == ["/items/1", "/items/9"]
        assert view[1]["events"][0][1]["exception.type"] == "ValueError"
        for v in view:
            v["attributes"].pop("server.address")
    assert views["modelobs"] == views["library"]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_latency_exemplar_names_the_trace_and_span_it_measured(
    implementation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK's trace-based filter: which traces get exemplars in production (only those tail
    # sampling keeps) is tests/test_exemplars.py's subject, not the instrumentation's.
    monkeypatch.setenv("OTEL_METRICS_EXEMPLAR_FILTER", "trace_based")
    statuses, spans, metrics = run(implementation, [("GET", "/items/3", {})])
    assert statuses == [200]
    (server,) = spans
    _, points = metrics["http.server.request.duration"]
    exemplars = [e for p in points for e in p.exemplars]
    assert [(e.trace_id, e.span_id) for e in exemplars] == [
        (server.context.trace_id, server.context.span_id)
    ]


def test_middleware_reads_the_library_header_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset arguments fall back to the library's variables, as instrument_app's do."""
    for name, value in CAPTURE_ENV.items():
        monkeypatch.setenv(name, value)
    middleware = ServerTelemetryMiddleware(app=None)  # type: ignore[arg-type]
    assert middleware.capture_request == ["x-request-id", "authorization"]
    assert middleware.capture_response == ["content-type"]
    assert middleware.sanitize.sanitize_header_value("Authorization", "x") == "[REDACTED]"
    explicit = ServerTelemetryMiddleware(None, http_capture_headers_server_request=["a"])  # type: ignore[arg-type]
    assert explicit.capture_request == ["a"]


@pytest.mark.parametrize(
    ("setting", "scope_name"),
    [
        (None, "modelobs"),
        ("modelobs", "modelobs"),
        ("library", "opentelemetry.instrumentation.fastapi"),
    ],
)
def test_one_setting_switches_an_app_to_the_library(
    monkeypatch: pytest.MonkeyPatch, setting: str | None, scope_name: str
) -> None:
    """MODELOBS_HTTP_INSTRUMENTATION picks the implementation (ours by default); either
    way the app's own telemetry is current in its handlers (the log sinks read it)."""
    if setting is None:
        monkeypatch.delenv("MODELOBS_HTTP_INSTRUMENTATION", raising=False)
    else:
        monkeypatch.setenv("MODELOBS_HTTP_INSTRUMENTATION", setting)
    get_settings.cache_clear()
    try:
        cap = captured("conformance")

        @asynccontextmanager
        async def nothing() -> AsyncIterator[None]:
            yield

        app = create_service_app("switch", cap.telemetry, False, nothing)
        seen: list[object] = []

        @app.get("/whose")
        async def whose() -> dict[str, str]:
            seen.append(current_telemetry.get())
            return {}

        assert asyncio.run(send_all(app, [("GET", "/whose", {})])) == [200]
        (span,) = cap.finished_spans()
        assert span.name == "GET /whose"
        assert span.instrumentation_scope.name == scope_name
        assert seen == [cap.telemetry]
        cap.telemetry.shutdown()
    finally:
        get_settings.cache_clear()


def test_the_setting_accepts_only_the_two_implementations() -> None:
    assert Settings(http_instrumentation="library").http_instrumentation == "library"
    with pytest.raises(ValidationError, match="http_instrumentation"):
        Settings(http_instrumentation="fastapi")


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_nothing_is_installed_with_the_sdk_disabled(
    monkeypatch: pytest.MonkeyPatch, implementation: str
) -> None:
    """OTEL_SDK_DISABLED: no instrumentation layer at all (the library would still run its
    whole request path on no-op spans), only the marking of the app's telemetry."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    telemetry = build_telemetry("disabled")
    assert not telemetry.enabled
    app = FastAPI()
    instrument_server(app, telemetry, implementation)
    layer, layers = app.build_middleware_stack(), []
    while layer is not None and len(layers) < 20:
        layers.append(type(layer))
        layer = getattr(layer, "app", None)
    assert OpenTelemetryMiddleware not in layers and ServerTelemetryMiddleware not in layers
    assert layers.count(ServerErrorMiddleware) == 1  # Starlette's own, not re-wrapped


def test_the_docs_quote_the_committed_measurements() -> None:
    """bench/README.md's server-instrumentation tables are the committed results, and the
    README names the switch the settings accept."""
    repo = Path(__file__).resolve().parent.parent
    bench_doc = (repo / "bench" / "README.md").read_text()
    in_process = json.loads((repo / "bench/results/server_instrumentation.json").read_text())
    for name, label in [
        ("bare", "bare (SDK disabled)"),
        ("ours", "**ours**"),
        ("library, lean", "**library, lean**"),
    ]:
        row = next(line for line in bench_doc.splitlines() if line.startswith(f"| {label}"))
        assert f"| {in_process['median_us_per_request'][name]:.1f} |" in row, row
    end_to_end = json.loads(
        (repo / "bench/results/server_instrumentation_end_to_end.json").read_text()
    )
    rows = {
        "model full": "| **model full** (ours)",
        "model full, library": "| **model full, library**",
    }
    for name, label in rows.items():
        summary = end_to_end["summary"][name]
        row = next(line for line in bench_doc.splitlines() if line.startswith(label))
        assert f"**{summary['of_bare']:.3f}**" in row, row
        assert f"| {summary['cpu_us_per_request_median']:.0f} |" in row, row
    gain = end_to_end["ours_minus_library_of_bare"]["model"]["of_bare_throughput"]
    assert f"**{gain:+.3f}** of bare throughput measured" in bench_doc
    readme = (repo / "README.md").read_text()
    assert "MODELOBS_HTTP_INSTRUMENTATION=library" in readme
    assert set(get_args(Settings.model_fields["http_instrumentation"].annotation)) == {
        "modelobs",
        "library",
    }
