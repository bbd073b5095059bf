"""The skeleton both apps are built on: telemetry start-up, a lifespan around each app's own
resources, the error handlers, the liveness probe and the server instrumentation."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from ..monitoring.process_memory import register_process_memory
from ..settings import Settings, get_settings
from ..telemetry import (
    Telemetry,
    build_telemetry,
    configure_logging,
    current_telemetry,
    set_process_telemetry,
)
from ..telemetry.metrics_endpoint import serve_metrics
from ..telemetry.server_instrumentation import HttpInstrumentation, instrument_server
from .errors import install_error_handlers


def start_telemetry(
    service_name: str, settings: Settings, telemetry: Telemetry | None
) -> tuple[Telemetry, bool]:
    """The given telemetry (tests), or one built from OTEL_*; True when we own it."""
    owned = telemetry is None
    telemetry = telemetry or build_telemetry(service_name, environment=settings.environment)
    configure_logging(per_request_on_stdout=settings.stdout_predictions)
    set_process_telemetry(telemetry)
    register_process_memory(telemetry.meter)
    return telemetry, owned


def settle_heap() -> None:
    """Called once start-up is done: move everything loaded so far (model, libraries, the
    SDK) out of the collector's sight, so the full collections that telemetry's many
    short-lived objects trigger do not rescan it on the request path (measured: p99 under
    load halves; see bench/README.md)."""
    gc.collect()
    gc.freeze()


def create_service_app(
    title: str,
    telemetry: Telemetry,
    owns_telemetry: bool,
    resources: Callable[[], AbstractAsyncContextManager[None]],
    http_instrumentation: HttpInstrumentation | None = None,
) -> FastAPI:
    """An app whose lifespan opens ``resources`` (the app's own start-up and shutdown) with
    its telemetry current, settles the heap once they are up, and shuts down the telemetry
    it owns last, so shutdown logs still go out. Server telemetry comes from
    ``http_instrumentation``, by default ``MODELOBS_HTTP_INSTRUMENTATION``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        current_telemetry.set(telemetry)  # start-up logs, and threads started here
        try:
            async with resources():
                settle_heap()
                yield
        finally:
            if owns_telemetry:
                telemetry.shutdown()

    app = FastAPI(title=title, lifespan=lifespan)
    install_error_handlers(app, telemetry)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    instrument_server(app, telemetry, http_instrumentation or get_settings().http_instrumentation)
    serve_metrics(app, telemetry)  # pull mode: GET /metrics, outermost
    return app
