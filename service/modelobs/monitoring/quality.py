"""Model quality once labels arrive: rolling accuracy, precision, recall and F1 over the last
N labelled predictions, and how long labels take to arrive; and, beside it, the same quality
estimated from the predictions' calibrated probabilities before labels arrive."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence

from opentelemetry import metrics

from .performance_estimation import PerformanceEstimator

# Labels arrive from seconds (a click) to days (a churned customer).
LABEL_DELAY_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)


class QualityTracker:
    """A bounded window of (predicted, true) pairs; gauges computed when collected."""

    def __init__(
        self,
        classes: Sequence[str],
        window: int,
        meter: metrics.Meter,
        model_attributes: dict[str, str],
        estimation_window: int | None = None,
    ) -> None:
        self.classes = tuple(classes)
        self.estimator = PerformanceEstimator(
            classes, estimation_window or window, meter, model_attributes
        )
        self._pairs: deque[tuple[str, str]] = deque(maxlen=window)
        self._lock = threading.Lock()
        self._attributes = model_attributes
        self.label_delay = meter.create_histogram(
            "modelobs.label.delay",
            unit="s",
            description="Time from a prediction to its true label",
            explicit_bucket_boundaries_advisory=list(LABEL_DELAY_BUCKETS),
        )
        meter.create_observable_gauge(
            "modelobs.model.accuracy",
            callbacks=[self._observe_accuracy],
            description="Accuracy over the last labelled predictions",
        )
        for name, index in (("precision", 0), ("recall", 1), ("f1", 2)):
            meter.create_observable_gauge(
                f"modelobs.model.{name}",
                callbacks=[self._per_class(index)],
                description=f"{name.capitalize()} per class over the last labelled predictions",
            )
        meter.create_observable_gauge(
            "modelobs.model.labelled_window.size",
            callbacks=[lambda _: [metrics.Observation(len(self._pairs), self._attributes)]],
            unit="{prediction}",
            description="Labelled predictions the quality gauges are computed over",
        )

    def seed(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Restore the window from the prediction log after a restart."""
        with self._lock:
            self._pairs.extend(pairs)

    def observe_probabilities(self, rows: Iterable[Sequence[float]]) -> None:
        """Each prediction's calibrated class probabilities (in ``classes`` order), for the
        label-free estimate."""
        self.estimator.add(rows)

    def add(self, predicted: str, true: str, delay_s: float) -> None:
        with self._lock:
            self._pairs.append((predicted, true))
        self.label_delay.record(max(delay_s, 0.0), self._attributes)

    def accuracy(self) -> float | None:
        with self._lock:
            pairs = list(self._pairs)
        if not pairs:
            return None
        return sum(p == t for p, t in pairs) / len(pairs)

    def per_class(self) -> dict[str, tuple[float | None, float | None, float | None]]:
        """class → (precision, recall, F1); None where undefined (no such predictions)."""
        with self._lock:
            pairs = list(self._pairs)
        out: dict[str, tuple[float | None, float | None, float | None]] = {}
        for c in self.classes:
            tp = sum(1 for p, t in pairs if p == c and t == c)
            predicted = sum(1 for p, _ in pairs if p == c)
            actual = sum(1 for _, t in pairs if t == c)
            precision = tp / predicted if predicted else None
            recall = tp / actual if actual else None
            f1 = None
            if precision is not None and recall is not None:
                f1 = (
                    0.0
                    if precision + recall == 0
                    else 2 * precision * recall / (precision + recall)
                )
            out[c] = (precision, recall, f1)
        return out

    def _observe_accuracy(self, _: metrics.CallbackOptions) -> list[metrics.Observation]:
        value = self.accuracy()
        return [] if value is None else [metrics.Observation(value, self._attributes)]

    def _per_class(self, index: int):  # type: ignore[no-untyped-def]
        def observe(_: metrics.CallbackOptions) -> list[metrics.Observation]:
            return [
                metrics.Observation(values[index], {**self._attributes, "class": c})
                for c, values in self.per_class().items()
                if values[index] is not None
            ]

        return observe
