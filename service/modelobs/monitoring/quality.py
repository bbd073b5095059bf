"""Model quality once labels arrive: rolling accuracy, precision, recall and F1 over the last
N labelled predictions, and how long labels take to arrive.

All of it is computed in one place, :meth:`QualityTracker.summary`, from one window: the
gauges and ``GET /quality`` read the same :class:`QualitySummary`. Another quality figure
(say an estimate that needs no labels) is one more field on the summary and one more row
in :meth:`QualityTracker._gauges`. Beside it, the same quality estimated from the
predictions' calibrated probabilities before labels arrive (``PerformanceEstimator``, fed by
:meth:`QualityTracker.observe_probabilities`).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

from opentelemetry import metrics

from .performance_estimation import PerformanceEstimator

# Labels arrive from seconds (a click) to days (a churned customer).
LABEL_DELAY_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)


@dataclass(frozen=True)
class ClassQuality:
    """One class's figures; None where undefined (no such predictions, or no such labels)."""

    precision: float | None
    recall: float | None
    f1: float | None


@dataclass(frozen=True)
class QualitySummary:
    """Everything computed over the labelled window (what ``GET /quality`` answers)."""

    window_size: int
    accuracy: float | None
    classes: dict[str, ClassQuality]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def summarise(pairs: Sequence[tuple[str, str]], classes: Sequence[str]) -> QualitySummary:
    """Accuracy and per-class precision, recall and F1 of (predicted, true) pairs."""
    accuracy = sum(p == t for p, t in pairs) / len(pairs) if pairs else None
    per_class: dict[str, ClassQuality] = {}
    for c in classes:
        tp = sum(1 for p, t in pairs if p == c and t == c)
        predicted = sum(1 for p, _ in pairs if p == c)
        actual = sum(1 for _, t in pairs if t == c)
        precision = tp / predicted if predicted else None
        recall = tp / actual if actual else None
        f1 = None
        if precision is not None and recall is not None:
            f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
        per_class[c] = ClassQuality(precision, recall, f1)
    return QualitySummary(len(pairs), accuracy, per_class)


class QualityTracker:
    """A bounded window of (predicted, true) pairs; the summary is computed when read, once
    per change of the window.

    ``refresh`` runs before every read (gauge collection, ``summary()``): the monitor passes
    its label catch-up, so what a collection exports includes every label stored before it.
    """

    def __init__(
        self,
        classes: Sequence[str],
        window: int,
        meter: metrics.Meter,
        model_attributes: dict[str, str],
        refresh: Callable[[], object] | None = None,
        estimation_window: int | None = None,
    ) -> None:
        self.classes = tuple(classes)
        self.estimator = PerformanceEstimator(
            classes, estimation_window or window, meter, model_attributes
        )
        self._pairs: deque[tuple[str, str]] = deque(maxlen=window)
        self._lock = threading.Lock()
        self._changes = 0  # bumped by every add; the cached summary is of _summary_at
        self._summary_at = -1
        self._summary = summarise((), self.classes)
        self._attributes = model_attributes
        self._refresh = refresh
        self.label_delay = meter.create_histogram(
            "modelobs.label.delay",
            unit="s",
            description="Time from a prediction to its true label",
            explicit_bucket_boundaries_advisory=list(LABEL_DELAY_BUCKETS),
        )
        for name, unit, description, observe in self._gauges():
            meter.create_observable_gauge(
                name, callbacks=[observe], unit=unit, description=description
            )

    def _gauges(self) -> list[tuple[str, str, str, Callable[..., list[metrics.Observation]]]]:
        """(name, unit, description, callback) of every quality gauge."""
        per_class = [
            (
                f"modelobs.model.{name}",
                "",
                f"{name.capitalize()} per class over the last labelled predictions",
                self._per_class(name),
            )
            for name in ("precision", "recall", "f1")
        ]
        return [
            (
                "modelobs.model.accuracy",
                "",
                "Accuracy over the last labelled predictions",
                self._observe(lambda s: s.accuracy),
            ),
            *per_class,
            (
                "modelobs.model.labelled_window.size",
                "{prediction}",
                "Labelled predictions the quality gauges are computed over",
                self._observe(lambda s: s.window_size),
            ),
        ]

    def observe_probabilities(self, rows: Iterable[Sequence[float]]) -> None:
        """Each prediction's calibrated class probabilities (in ``classes`` order), for the
        label-free estimate."""
        self.estimator.add(rows)

    def add(self, predicted: str, true: str, delay_s: float | None) -> None:
        """One label; ``delay_s`` None when the label is not new (a replay after a restart)."""
        with self._lock:
            self._pairs.append((predicted, true))
            self._changes += 1
        if delay_s is not None:
            self.label_delay.record(max(delay_s, 0.0), self._attributes)

    def extend(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Labels already counted elsewhere (no delay recorded)."""
        with self._lock:
            self._pairs.extend(pairs)
            self._changes += 1

    def summary(self) -> QualitySummary:
        if self._refresh is not None:
            self._refresh()
        with self._lock:
            if self._summary_at != self._changes:
                self._summary = summarise(list(self._pairs), self.classes)
                self._summary_at = self._changes
            return self._summary

    def _observe(self, value: Callable[[QualitySummary], float | None]):  # type: ignore[no-untyped-def]
        def observe(_: metrics.CallbackOptions) -> list[metrics.Observation]:
            found = value(self.summary())
            return [] if found is None else [metrics.Observation(found, self._attributes)]

        return observe

    def _per_class(self, name: str):  # type: ignore[no-untyped-def]
        def observe(_: metrics.CallbackOptions) -> list[metrics.Observation]:
            return [
                metrics.Observation(value, {**self._attributes, "class": c})
                for c, figures in self.summary().classes.items()
                if (value := getattr(figures, name)) is not None
            ]

        return observe
