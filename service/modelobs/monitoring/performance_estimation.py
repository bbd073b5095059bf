"""Label-free performance estimation: accuracy, precision and recall expected from the model's
calibrated probabilities over the recent predictions, before any label arrives.

Confidence-based performance estimation (CBPE, as published by NannyML): when the
probabilities are calibrated, a prediction whose top class has probability ``p`` is right with
probability ``p``. Summing those expectations over a window gives the expected confusion matrix,
hence expected accuracy, precision and recall. The estimate holds under covariate shift (inputs
move, P(label | inputs) does not) and is biased under label shift or concept shift, where only
labels tell: docs/runbooks/ModelEstimatedAccuracyLow.md explains how to read a disagreement.

The window is a bounded deque filled on the request path (one append per prediction); the
arithmetic runs when the metric reader collects, over a numpy copy of the window.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from opentelemetry import metrics


@dataclass(frozen=True)
class Estimate:
    """Expected quality over a window; per-class values are None where undefined."""

    size: int
    accuracy: float
    precision: dict[str, float | None]
    recall: dict[str, float | None]


def estimate(classes: Sequence[str], probabilities: np.ndarray) -> Estimate:
    """The expected confusion matrix of ``probabilities`` (rows: predictions, columns: classes)
    read as accuracy and per-class precision and recall.

    Expected true positives of class c: the probability of c summed over rows predicted c.
    Expected actual count of c: the probability of c summed over every row.
    """
    probabilities = np.asarray(probabilities, dtype=float)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(classes):
        raise ValueError(
            f"expected rows of {len(classes)} probabilities, got {probabilities.shape}"
        )
    if not len(probabilities):
        raise ValueError("no predictions to estimate from")
    predicted = probabilities.argmax(axis=1)
    top = probabilities[np.arange(len(probabilities)), predicted]
    precision: dict[str, float | None] = {}
    recall: dict[str, float | None] = {}
    for index, name in enumerate(classes):
        chosen = predicted == index
        true_positives = float(top[chosen].sum())
        expected_actual = float(probabilities[:, index].sum())
        precision[name] = true_positives / int(chosen.sum()) if chosen.any() else None
        recall[name] = true_positives / expected_actual if expected_actual > 0 else None
    return Estimate(len(probabilities), float(top.mean()), precision, recall)


class PerformanceEstimator:
    """A bounded window of predicted probability rows; estimated-quality gauges computed when
    collected."""

    def __init__(
        self,
        classes: Sequence[str],
        window: int,
        meter: metrics.Meter,
        model_attributes: dict[str, str],
    ) -> None:
        self.classes = tuple(classes)
        self._rows: deque[tuple[float, ...]] = deque(maxlen=window)
        self._lock = threading.Lock()
        self._attributes = model_attributes
        meter.create_observable_gauge(
            "modelobs.model.estimated_accuracy",
            callbacks=[self._observe_accuracy],
            description="Accuracy expected from the calibrated probabilities of the last "
            "predictions (no labels needed)",
        )
        for name in ("precision", "recall"):
            meter.create_observable_gauge(
                f"modelobs.model.estimated_{name}",
                callbacks=[self._per_class(name)],
                description=f"{name.capitalize()} per class expected from the calibrated "
                "probabilities of the last predictions",
            )
        meter.create_observable_gauge(
            "modelobs.model.estimation_window.size",
            callbacks=[lambda _: [metrics.Observation(len(self._rows), self._attributes)]],
            unit="{prediction}",
            description="Predictions the estimated quality gauges are computed over",
        )

    def add(self, rows: Iterable[Sequence[float]]) -> None:
        """Called on the request path: one append per prediction, nothing computed."""
        with self._lock:
            self._rows.extend(tuple(row) for row in rows)

    def current(self) -> Estimate | None:
        with self._lock:
            rows = list(self._rows)
        return estimate(self.classes, np.array(rows)) if rows else None

    def _observe_accuracy(self, _: metrics.CallbackOptions) -> list[metrics.Observation]:
        found = self.current()
        return [] if found is None else [metrics.Observation(found.accuracy, self._attributes)]

    def _per_class(self, name: str):  # type: ignore[no-untyped-def]
        def observe(_: metrics.CallbackOptions) -> list[metrics.Observation]:
            found = self.current()
            if found is None:
                return []
            values = found.precision if name == "precision" else found.recall
            return [
                metrics.Observation(value, {**self._attributes, "class": c})
                for c, value in values.items()
                if value is not None
            ]

        return observe
