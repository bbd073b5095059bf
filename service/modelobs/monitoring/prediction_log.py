"""The prediction log's former import path: the store now lives in ``monitoring.store``."""

from __future__ import annotations

from .store import (
    DROP_REASONS,
    FeedbackOutcome,
    PredictionRow,
    PredictionStore,
    SQLiteStore,
    open_store,
)

#: The SQLite store under its original name (a path and a meter, as before).
PredictionLog = SQLiteStore

__all__ = [
    "DROP_REASONS",
    "FeedbackOutcome",
    "PredictionLog",
    "PredictionRow",
    "PredictionStore",
    "open_store",
]
