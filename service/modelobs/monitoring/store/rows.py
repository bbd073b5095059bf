"""What the prediction store holds and answers, independent of the database behind it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class PredictionRow:
    """One answered prediction, with its true label once feedback arrived."""

    prediction_id: str
    created_at: float
    model_version: str
    features: dict[str, float | str]
    prediction: str
    score: float
    trace_id: str | None = None
    true_label: str | None = None
    labelled_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        """Every field, by its name (what GET /predictions answers)."""
        return asdict(self)


class FeedbackOutcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    UNKNOWN_ID = "unknown_id"
