"""Server spans and ``http.server.request.duration`` for an ASGI app, on the stable HTTP
semantic conventions.

Ours rather than the FastAPI instrumentation for two reasons: the duration is recorded
*inside* the server span, so its exemplars carry the request's trace id, and there are no
per-message receive/send spans, which keeps the request path cheap.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode

from .context import current_telemetry
from .providers import Telemetry

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Semantic-convention buckets for http.server.request.duration (seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
# Probes would drown the real traffic in traces and metrics.
DEFAULT_EXCLUDED_PATHS = frozenset({"/healthz", "/readyz"})


class _HeaderGetter:
    """Reads W3C headers straight from the ASGI header list (no dict copy)."""

    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        wanted = key.lower().encode("latin-1")
        values = [v.decode("latin-1") for k, v in carrier if k == wanted]
        return values or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier]


_GETTER = _HeaderGetter()


class ServerTelemetryMiddleware:
    """Outermost user middleware of each app: one server span and one duration per request."""

    def __init__(
        self,
        app: ASGIApp,
        telemetry: Telemetry,
        excluded_paths: frozenset[str] = DEFAULT_EXCLUDED_PATHS,
    ) -> None:
        self.app = app
        self.telemetry = telemetry
        self.excluded_paths = excluded_paths
        self.tracer = telemetry.tracer
        self.duration = telemetry.meter.create_histogram(
            "http.server.request.duration",
            unit="s",
            description="Duration of HTTP server requests.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = current_telemetry.set(self.telemetry)
        try:
            if scope["path"] in self.excluded_paths or not self.telemetry.enabled:
                await self.app(scope, receive, send)
            else:
                await self._traced(scope, receive, send)
        finally:
            current_telemetry.reset(token)

    async def _traced(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        raw_method = scope["method"]
        method = raw_method if raw_method in KNOWN_METHODS else "_OTHER"
        parent = propagate.extract(scope["headers"], getter=_GETTER)
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.scheme": scope.get("scheme", "http"),
        }
        span_attributes = dict(attributes)
        span_attributes["url.path"] = scope["path"]
        if scope.get("query_string"):
            span_attributes["url.query"] = scope["query_string"].decode("latin-1")
        if scope.get("server"):
            span_attributes["server.address"], span_attributes["server.port"] = scope["server"]
        if scope.get("client"):
            span_attributes["client.address"] = scope["client"][0]
        span_attributes["network.protocol.version"] = scope.get("http_version", "1.1")
        if method == "_OTHER":
            span_attributes["http.request.method_original"] = raw_method
        # Attached, not only passed as the parent: incoming baggage must stay current so
        # that outgoing calls carry it on.
        context_token = otel_context.attach(parent)
        try:
            with self.tracer.start_as_current_span(
                method,
                kind=SpanKind.SERVER,
                attributes=span_attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    await self._run_in_span(span, scope, receive, send, attributes)
                finally:
                    # Recorded while the span is current: the exemplar names this trace.
                    self.duration.record(time.perf_counter() - start, attributes)
        finally:
            otel_context.detach(context_token)

    async def _run_in_span(
        self, span: Any, scope: Scope, receive: Receive, send: Send, attributes: dict[str, Any]
    ) -> None:
        """Runs the app; completes ``attributes`` and the span from what happened."""
        method = attributes["http.request.method"]
        status = [0]

        async def send_with_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        error_type: str | None = None
        try:
            await self.app(scope, receive, send_with_status)
        except Exception as exc:
            error_type = type(exc).__qualname__
            span.record_exception(exc)
            raise
        finally:
            code = status[0] or 500
            attributes["http.response.status_code"] = code
            span.set_attribute("http.response.status_code", code)
            route = getattr(scope.get("route"), "path", None)
            if route:
                attributes["http.route"] = route
                span.set_attribute("http.route", route)
                span.update_name(f"{method} {route}")
            if code >= 500:
                # A handler may have named the exception already (apps.errors.internal_error).
                recorded = getattr(span, "attributes", None) or {}
                error_type = error_type or recorded.get("error.type") or str(code)
                span.set_status(Status(StatusCode.ERROR, error_type))
            if error_type:
                attributes["error.type"] = error_type
                span.set_attribute("error.type", error_type)
