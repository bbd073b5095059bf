"""The monitor app (``modelobs serve monitor``): drift and quality over every replica's
predictions, read from the shared prediction store, under its own ``service.name``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from loguru import logger
from opentelemetry.metrics import NoOpMeter

from ..model import store
from ..model.store import ModelBundle
from ..monitoring.drift.events import log_drift_change
from ..monitoring.model_monitor import ModelMonitor
from ..monitoring.store import PredictionStore, open_store
from ..settings import Settings, get_settings
from ..telemetry import Telemetry, run_as
from .monitor_routes import NoMonitor, add_monitor_routes
from .service_app import create_service_app, start_telemetry

SERVICE_NAME = "model-monitor"
LOADING = NoMonitor(
    503,
    "monitor_loading",
    "the monitor is waiting for the model bundle (MODELOBS_MODEL_DIR)",
    "The model bundle is not there yet",
)
BUNDLE_RETRY_S = 1.0


async def wait_for_bundle(settings: Settings) -> ModelBundle:
    """The model services train the bundle on their first start; the monitor never trains
    (two trainers would race on one directory), it waits for it."""
    told = False
    while True:
        try:
            return await asyncio.to_thread(store.load, settings.model_dir)
        except store.ModelNotFoundError as missing:
            if not told:
                logger.bind(event="monitor_waiting", model_dir=str(settings.model_dir)).warning(
                    "{}; waiting for a model service to train it", missing
                )
                told = True
        await asyncio.sleep(BUNDLE_RETRY_S)


def create_app(
    settings: Settings | None = None,
    telemetry: Telemetry | None = None,
    bundle: ModelBundle | None = None,
) -> FastAPI:
    """App factory, as the model service's (uvicorn calls it after any fork)."""
    settings = settings or get_settings()
    telemetry, owns_telemetry = start_telemetry(SERVICE_NAME, settings, telemetry)
    state: dict[str, ModelMonitor] = {}

    async def start(feed: PredictionStore) -> None:
        loaded = bundle or await wait_for_bundle(settings)
        monitor = ModelMonitor(
            loaded, settings, telemetry.meter, feed, run_as(telemetry, log_drift_change)
        )
        monitor.start()
        state["monitor"] = monitor
        logger.bind(event="monitor_started", **{"model.version": loaded.schema.version}).info(
            "monitoring {} {} from {}", loaded.schema.name, loaded.schema.version, feed.where
        )

    @asynccontextmanager
    async def resources() -> AsyncIterator[None]:
        # Only read here: the writer's own metrics would be zeros under this service.
        feed = open_store(settings, NoOpMeter("model-monitor"))
        await asyncio.to_thread(feed.start)
        starting = asyncio.create_task(start(feed))
        try:
            yield
        finally:
            starting.cancel()
            if "monitor" in state:
                state.pop("monitor").stop()
            feed.stop()

    app = create_service_app(
        "modelobs monitor",
        telemetry,
        owns_telemetry,
        resources,
        http_instrumentation=settings.http_instrumentation,
    )

    @app.get("/readyz", responses={503: {"description": "Still loading or replaying the store"}})
    async def readyz() -> JSONResponse:
        monitor = state.get("monitor")
        if monitor is None:
            return JSONResponse({"status": "waiting for the model bundle"}, status_code=503)
        if not monitor.ready:
            return JSONResponse({"status": "reading the prediction store"}, status_code=503)
        return JSONResponse({"status": "ready"})

    add_monitor_routes(app, lambda: state.get("monitor"), LOADING)
    return app
