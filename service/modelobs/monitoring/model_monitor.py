"""The monitor: drift and model quality computed once over every replica's predictions.

It reads the shared prediction store through two incremental feeds (new predictions, new
labels, each after a cursor: no rescans), keeps the drift window and the quality window, and
publishes the gauges. The model services only append to the store; they never feed the
monitor directly, so the same code serves one process (``MODELOBS_MONITOR=embedded``, run
inside ``serve model``) and any number of replicas (``modelobs serve monitor``).

A poll thread reads both feeds every ``poll_interval_s`` until they are empty. On start it
replays the store from the beginning (the windows are rebuilt as they were); drift verdicts
are computed, and drift changes logged, only once that replay has reached the end, and a
label's delay is recorded only for labels that arrive after the monitor started, so a
restart neither logs stale verdicts nor counts old labels twice. Rows of another model
version than the monitored bundle's are skipped: drift is against this model's reference.

Quality gauges read the label feed once more when they are collected (``refresh``), so an
export includes every label stored before it. Drift gauges show the last computed report.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from loguru import logger
from opentelemetry import metrics

from ..model.store import ModelBundle
from ..settings import Settings
from .drift import DriftMonitor, DriftReport, DriftSettings, FeatureSpec
from .performance_estimation import binary_rows
from .quality import QualitySummary, QualityTracker
from .store import PredictionRow

FAILURE_LOG_EVERY_S = 30.0


class PredictionFeed(Protocol):
    """What the monitor needs from the prediction store (cursors are opaque, 0 = start)."""

    def predictions_after(self, cursor: int, limit: int) -> tuple[list[PredictionRow], int]: ...

    def labels_after(self, cursor: int, limit: int) -> tuple[list[PredictionRow], int]: ...

    def feed_heads(self) -> tuple[int, int]: ...


def drift_settings(settings: Settings) -> DriftSettings:
    """The drift knobs from the service settings."""
    return DriftSettings(
        window_size=settings.drift_window,
        window_seconds=settings.drift_window_seconds,
        min_window=min(settings.drift_min_window, settings.drift_window),
        recompute_every=settings.drift_recompute_every,
        recompute_interval_s=settings.drift_interval_s,
    )


class ModelMonitor:
    """Drift and quality windows fed from the store; gauges registered on ``meter``."""

    def __init__(
        self,
        bundle: ModelBundle,
        settings: Settings,
        meter: metrics.Meter,
        feed: PredictionFeed,
        on_drift_change: Callable[[DriftReport, list[str]], None] | None = None,
        *,
        from_tail: bool = True,
    ) -> None:
        schema = bundle.schema
        self.model_version = schema.version
        self._feed = feed
        self._batch = settings.monitor_batch_size
        self._poll_interval_s = settings.monitor_poll_interval_s
        self._prediction_cursor = 0
        self._label_cursor = 0
        # A start reads only the newest rows the windows can hold, not the whole store:
        # every window keeps at most this many (drift, estimate: predictions; quality: labels).
        self._replay_predictions = max(settings.drift_window, settings.quality_window)
        self._replay_labels = settings.quality_window
        self._tail_started = not from_tail  # from_tail=False reads the whole store
        self._predictions_lock = threading.Lock()
        self._labels_lock = threading.Lock()
        self._started_at = time.time()
        self._caught_up_at: float | None = None  # start of the last poll that read everything
        self.rows_read = 0
        self.rows_skipped = 0  # another model version's rows
        self.labels_read = 0
        self.drift = DriftMonitor(
            [FeatureSpec(f.name, f.kind, f.categories) for f in schema.features],
            bundle.reference,
            drift_settings(settings),
            on_change=on_drift_change,
        )
        self.drift.register_metrics(meter)
        self.quality = QualityTracker(
            schema.classes,
            settings.quality_window,
            meter,
            {"model.name": schema.name, "model.version": schema.version},
            refresh=self._refresh_labels,
        )
        meter.create_observable_gauge(
            "modelobs.monitor.lag",
            callbacks=[self._observe_lag],
            unit="s",
            description="Seconds since the monitor last read everything in the prediction "
            "store; rows stored since are not in its windows yet",
        )
        self._last_failure_log = 0.0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------
    def start(self) -> None:
        # The poll thread logs in the context of whoever started it (its service's telemetry).
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name="model-monitor", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.drift.stop()

    @property
    def ready(self) -> bool:
        """True once the replay of the store at start-up has reached its end."""
        return self._ready.is_set()

    def wait_ready(self, timeout_s: float) -> bool:
        return self._ready.wait(timeout_s)

    # -- reading the store --------------------------------------------------------------
    def start_at_tail(self) -> None:
        """Move both cursors to just below the newest rows the windows can hold, so that a
        (re)start costs the windows' size, not the store's (a million rows took 28 s to
        replay from SQLite, 75 s from PostgreSQL: bench/README.md). Sequence numbers may
        have gaps, so the windows may start a little short of full; never over-full."""
        predictions_head, labels_head = self._feed.feed_heads()
        with self._predictions_lock:
            self._prediction_cursor = max(
                self._prediction_cursor, predictions_head - self._replay_predictions
            )
        with self._labels_lock:
            self._label_cursor = max(self._label_cursor, labels_head - self._replay_labels)

    def catch_up(self) -> int:
        """Read both feeds until they are empty; returns how many rows were read."""
        started = time.time()
        read = self.read_predictions() + self.read_labels()
        self._caught_up_at = started
        return read

    def _batches(
        self, read: Callable[[int, int], tuple[list[PredictionRow], int]], cursor: int
    ) -> Iterator[tuple[list[PredictionRow], int]]:
        """One feed's rows after ``cursor``, a batch at a time, until a short batch."""
        while True:
            rows, cursor = read(cursor, self._batch)
            yield rows, cursor
            if len(rows) < self._batch:
                return

    def read_predictions(self) -> int:
        """New predictions into the drift window, in store order."""
        read = 0
        with self._predictions_lock:
            feed = self._batches(self._feed.predictions_after, self._prediction_cursor)
            for rows, self._prediction_cursor in feed:
                mine = [r for r in rows if r.model_version == self.model_version]
                if mine:
                    self.drift.observe([r.features for r in mine], [r.created_at for r in mine])
                    # The label-free estimate reads the stored (class, score) of each one.
                    scored = [(r.prediction, r.score) for r in mine]
                    self.quality.observe_probabilities(binary_rows(self.quality.classes, scored))
                self.rows_skipped += len(rows) - len(mine)
                self.rows_read += len(rows)
                read += len(rows)
        return read

    def read_labels(self) -> int:
        """New labels into the quality window, in the order they arrived."""
        read = 0
        with self._labels_lock:
            feed = self._batches(self._feed.labels_after, self._label_cursor)
            for rows, self._label_cursor in feed:
                for r in rows:
                    if r.model_version != self.model_version or r.true_label is None:
                        continue
                    labelled_at = r.labelled_at or r.created_at
                    new = labelled_at >= self._started_at
                    delay = labelled_at - r.created_at if new else None
                    self.quality.add(r.prediction, r.true_label, delay)
                self.labels_read += len(rows)
                read += len(rows)
        return read

    def _refresh_labels(self) -> None:
        """Before a collection: the labels stored so far. A store that is away leaves the
        window as it is (the poll thread logs it)."""
        with contextlib.suppress(Exception):  # reported by _run, which meets it too
            self.read_labels()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._tail_started:  # the poll thread's first read: newest rows only
                    self.start_at_tail()
                    self._tail_started = True
                self.catch_up()
            except Exception as exc:  # the store is away: keep the windows, try again
                now = time.monotonic()
                if now - self._last_failure_log > FAILURE_LOG_EVERY_S:  # not every poll
                    self._last_failure_log = now
                    logger.bind(event="monitor_read_failed", error_type=type(exc).__name__).error(
                        "monitor could not read the prediction store: {}", exc
                    )
            else:
                if not self._ready.is_set():
                    self._ready.set()
                    self.drift.start()  # verdicts only on the caught-up window
            self._stop.wait(self._poll_interval_s)

    # -- what it serves ---------------------------------------------------------------
    def drift_report(self) -> DriftReport:
        return self.drift.report()

    def quality_summary(self) -> QualitySummary:
        return self.quality.summary()

    def _observe_lag(self, _: metrics.CallbackOptions) -> list[metrics.Observation]:
        if self._caught_up_at is None:
            return []
        return [metrics.Observation(max(time.time() - self._caught_up_at, 0.0))]
