"""Which server instrumentation an app gets: ours (``http_server.py``, the default) or the
FastAPI instrumentation itself, configured lean (``MODELOBS_HTTP_INSTRUMENTATION=library``).

Both sit outside Starlette's error middleware, so exception handlers run inside the server
span, and both exclude the probes unless ``OTEL_PYTHON_FASTAPI_EXCLUDED_URLS`` (or
``OTEL_PYTHON_EXCLUDED_URLS``) says otherwise. With the SDK disabled nothing is installed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.semconv._incubating.metrics.http_metrics import HTTP_SERVER_ACTIVE_REQUESTS

from . import http_views
from .context import current_telemetry
from .http_server import ASGIApp, Receive, Scope, Send, ServerTelemetryMiddleware
from .providers import Telemetry

HttpInstrumentation = Literal["modelobs", "library"]
# Probes would drown the real traffic in traces and metrics (regexes searched in the URL).
DEFAULT_EXCLUDED_URLS = "/healthz$,/readyz$"
# What the library would otherwise add per request: a span per ASGI message.
LEAN_EXCLUDE_SPANS: list[Literal["receive", "send"]] = ["receive", "send"]


def excluded_urls() -> str:
    """The library's variables when set (even empty: trace everything), else the probes."""
    for name in ("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS"):
        if name in os.environ:
            return os.environ[name]
    return DEFAULT_EXCLUDED_URLS


class _MarkTelemetry:
    """Marks the app's telemetry as current for everything a request runs (log sinks)."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = current_telemetry.set(self.telemetry)
        try:
            await self.app(scope, receive, send)
        finally:
            current_telemetry.reset(token)


def instrument_server(
    app: FastAPI,
    telemetry: Telemetry,
    implementation: HttpInstrumentation = "modelobs",
    **options: Any,
) -> None:
    """Server spans, ``http.server.request.duration`` and ``http.server.active_requests``
    for ``app``, from ``telemetry``'s providers (per app, never the global ones).
    ``options``: what both take, as ``instrument_app`` names it (``server_request_hook``,
    ``http_capture_headers_server_request``, ...)."""
    build: Callable[[], ASGIApp] = app.build_middleware_stack
    if telemetry.enabled and implementation == "library":
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
            excluded_urls=excluded_urls(),
            exclude_spans=LEAN_EXCLUDE_SPANS,
            **options,
        )
        build = app.build_middleware_stack
    elif telemetry.enabled:
        starlette_stack, urls = build, excluded_urls()
        unused = http_views.UNUSED_HTTP_SERVER_INSTRUMENTS

        def build() -> ASGIApp:
            return ServerTelemetryMiddleware(
                starlette_stack(),
                tracer_provider=telemetry.tracer_provider,
                meter_provider=telemetry.meter_provider,
                excluded_urls=urls,
                active_requests=HTTP_SERVER_ACTIVE_REQUESTS not in unused,
                **options,
            )

    def build_marked() -> ASGIApp:
        return _MarkTelemetry(build(), telemetry)

    app.build_middleware_stack = build_marked  # type: ignore[method-assign]
