"""What `modelobs serve --workers N` checks and sets up before uvicorn starts N processes.

uvicorn starts its workers with the ``spawn`` method: each is a fresh interpreter that calls
the app factory itself, so every worker builds its own OpenTelemetry providers (own export
threads, own random ``service.instance.id``) and the parent never builds any; nothing is
inherited across a fork. What several workers would still get wrong is refused or fixed here:

* pull mode (``OTEL_METRICS_EXPORTER`` with ``prometheus``): each scrape of the shared port
  reaches one worker at random, so series would flap between workers: refused;
* the model service's embedded monitor would keep one drift and quality window per worker
  (issue 11): ``MODELOBS_MONITOR`` defaults to ``off`` (run ``modelobs serve monitor``
  beside it) and ``embedded`` is refused;
* a ``service.instance.id`` pinned in ``OTEL_RESOURCE_ATTRIBUTES`` would be shared by all
  workers, merging their series: each worker appends its pid (telemetry/instance.py);
* the monitor (``serve monitor``) is one process by design (refused in cli.py);
* a first start with no model would have every worker train one into the same directory:
  the parent loads or trains it once before the workers start.
"""

from __future__ import annotations

import os

from .settings import Settings
from .telemetry.instance import WORKERS_ENV
from .telemetry.providers import metrics_exporters

MONITOR_ENV = "MODELOBS_MONITOR"


class WorkersRefused(ValueError):
    """A configuration several workers cannot serve correctly; the message says why."""


def prepare_workers(app: str, workers: int, settings: Settings) -> list[str]:
    """Check and set the environment the workers inherit; returns notes for the operator."""
    if workers < 1:
        raise WorkersRefused(f"--workers {workers}: at least 1")
    if workers == 1:
        return []
    os.environ[WORKERS_ENV] = str(workers)
    if "prometheus" in metrics_exporters():
        raise WorkersRefused(
            f"--workers {workers} with OTEL_METRICS_EXPORTER=prometheus: each scrape would reach "
            "one worker at random; run one worker per port, or push metrics over OTLP"
        )
    notes: list[str] = []
    if app == "model":
        monitor = os.environ.get(MONITOR_ENV, "").strip().lower()
        if monitor == "embedded":
            raise WorkersRefused(
                f"--workers {workers} with {MONITOR_ENV}=embedded: each worker would keep its own "
                f"drift and quality window; set {MONITOR_ENV}=off and run `modelobs serve monitor`"
            )
        if not monitor:
            os.environ[MONITOR_ENV] = "off"
            notes.append(
                f"{workers} workers: {MONITOR_ENV}=off, drift and quality come from "
                "`modelobs serve monitor` over the shared prediction store"
            )
        _model_ready(settings)
    return notes


def _model_ready(settings: Settings) -> None:
    """Load or train the model once, here, so workers starting together only load it."""
    from .apps.model_service import load_or_train

    load_or_train(settings)
