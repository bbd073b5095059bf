"""The shared prediction store: SQLite by default, PostgreSQL for several replicas.

``open_store(settings)`` picks the store from ``MODELOBS_PREDICTION_DB`` (a file path, or
a ``postgresql://`` URL); both offer the same methods (:class:`PredictionStore`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from opentelemetry import metrics

from .base import DROP_REASONS, PredictionStore
from .ids import id_time, new_prediction_id
from .rows import FeedbackOutcome, PredictionRow
from .schema import SCHEMA_VERSION, SchemaVersionError
from .sqlite import SQLiteStore

if TYPE_CHECKING:
    from ...settings import Settings

__all__ = [
    "DROP_REASONS",
    "SCHEMA_VERSION",
    "FeedbackOutcome",
    "PredictionRow",
    "PredictionStore",
    "SQLiteStore",
    "SchemaVersionError",
    "id_time",
    "is_postgres_url",
    "new_prediction_id",
    "open_store",
]


def is_postgres_url(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def open_store(settings: Settings, meter: metrics.Meter | None = None) -> PredictionStore:
    """The store ``settings.prediction_db`` names (not started: call ``start()``)."""
    meter = meter or metrics.get_meter("modelobs.store")
    options = {
        "queue_size": settings.prediction_log_queue,
        "batch_size": settings.prediction_log_batch,
        "flush_interval_s": settings.prediction_log_flush_interval_s,
        "recent_id_wait_s": settings.feedback_wait_s,
    }
    location = settings.prediction_db
    if is_postgres_url(location):
        from .postgres import PostgresStore  # psycopg only when asked for

        return PostgresStore(str(location), meter, **options)
    return SQLiteStore(Path(location), meter, **options)
