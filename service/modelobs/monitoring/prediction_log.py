"""A durable log of every prediction in SQLite, written off the request path.

The request path only puts rows on a bounded queue (never waits); one writer thread
commits them in batches. A full queue drops the row, counts it and logs it. On stop the
writer drains the queue before closing, so a graceful shutdown loses nothing that was
answered. WAL mode lets readers (look-ups, feedback) work while the writer commits.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from loguru import logger
from opentelemetry import metrics

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    prediction_id TEXT PRIMARY KEY,
    created_at    REAL NOT NULL,
    model_version TEXT NOT NULL,
    features      TEXT NOT NULL,
    prediction    TEXT NOT NULL,
    score         REAL NOT NULL,
    trace_id      TEXT,
    true_label    TEXT,
    labelled_at   REAL
);
CREATE INDEX IF NOT EXISTS predictions_created_at ON predictions (created_at);
CREATE INDEX IF NOT EXISTS predictions_labelled_at ON predictions (labelled_at)
    WHERE labelled_at IS NOT NULL;
"""
_COLUMNS = (
    "prediction_id, created_at, model_version, features, prediction, score, trace_id, "
    "true_label, labelled_at"
)


DROP_REASONS = ("queue_full", "write_error")
# A prediction log that could not be opened is tried again this often; failures are logged
# at most this often.
REOPEN_EVERY_S = 1.0
LOG_EVERY_S = 5.0


@dataclass(frozen=True)
class PredictionRow:
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


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def _row(values: tuple[Any, ...]) -> PredictionRow:
    pid, created, version, features, prediction, score, trace_id, label, labelled = values
    return PredictionRow(
        pid, created, version, json.loads(features), prediction, score, trace_id, label, labelled
    )


class PredictionLog:
    """Bounded buffer in front of one SQLite writer thread.

    The request path appends to a deque (no lock, no wake-up: waking the writer per row
    costs more than the row); the writer drains it every ``flush_interval_s``, or at once
    when :meth:`flush` or :meth:`stop` asks.
    """

    def __init__(
        self,
        path: Path,
        meter: metrics.Meter,
        *,
        queue_size: int = 10_000,
        batch_size: int = 1000,
        flush_interval_s: float = 0.1,
    ) -> None:
        self.path = path
        self._pending: deque[PredictionRow] = deque()
        self._capacity = queue_size
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._submitted = 0  # only the event-loop thread writes this
        self._written = 0  # only the writer thread writes this
        self._wake = threading.Event()
        self._stopping = False
        self._progress = threading.Condition()
        self._thread: threading.Thread | None = None
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._last_drop_log = 0.0
        self._last_failure_log = -LOG_EVERY_S
        self._last_open_attempt = 0.0
        self._dropped = meter.create_counter(
            "modelobs.prediction_log.dropped",
            unit="{prediction}",
            description="Predictions not written to the prediction log",
        )
        for reason in DROP_REASONS:  # a series at 0 from the start, so panels show "0"
            self._dropped.add(0, {"reason": reason})
        meter.create_observable_gauge(
            "modelobs.prediction_log.queue.size",
            callbacks=[lambda _: [metrics.Observation(len(self._pending))]],
            unit="{prediction}",
            description="Predictions waiting for the prediction-log writer",
        )

    # -- life cycle -----------------------------------------------------------------
    def start(self) -> None:
        """Open the log and start its writer. A log that cannot be opened (a read-only or
        missing volume) does not stop the service: predictions are served, their rows
        counted as dropped (``write_error``), and the writer opens it once it can."""
        writer = self._open()
        # The writer logs in the context of whoever started it (its service's telemetry).
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run, writer), name="prediction-log-writer", daemon=True
        )
        self._thread.start()

    def _open(self) -> sqlite3.Connection | None:
        """The writer's connection with the schema in place (and the readers'), or None."""
        self._last_open_attempt = time.monotonic()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            writer = _connect(self.path)
            writer.executescript(SCHEMA)
            if self._reader is None:
                self._reader = _connect(self.path)
            return writer
        except (sqlite3.Error, OSError) as exc:
            self._log_failure("prediction_log_open_failed", "cannot open the prediction log", exc)
            return None

    def _log_failure(self, event: str, what: str, exc: BaseException, dropped: int = 0) -> None:
        """At most one ERROR line per LOG_EVERY_S (a dead disk fails every batch); the
        counter counts every row."""
        now = time.monotonic()
        if now - self._last_failure_log >= LOG_EVERY_S:
            self._last_failure_log = now
            logger.bind(event=event, dropped=dropped, path=str(self.path)).error(
                "{}: {}", what, exc
            )

    def stop(self, timeout_s: float = 30.0) -> None:
        """Drain the buffer, commit, close. Blocks until written or ``timeout_s``."""
        if self._thread is None:
            return
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.bind(event="prediction_log_stop_timeout").error(
                "prediction log writer still busy after {}s", timeout_s
            )
        self._thread = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # -- request path ---------------------------------------------------------------
    def submit(self, rows: Iterable[PredictionRow]) -> int:
        """Buffer without waiting; returns how many were dropped (buffer full)."""
        dropped = 0
        pending = self._pending
        for row in rows:
            if len(pending) >= self._capacity:
                dropped += 1
                continue
            pending.append(row)
            self._submitted += 1
        if dropped:
            self._dropped.add(dropped, {"reason": "queue_full"})
            now = time.monotonic()
            if now - self._last_drop_log > 5:
                self._last_drop_log = now
                logger.bind(event="prediction_log_dropped", dropped=dropped).warning(
                    "prediction log buffer full: {} predictions not recorded", dropped
                )
        return dropped

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until everything submitted so far is committed (used before look-ups)."""
        target = self._submitted
        self._wake.set()
        with self._progress:
            return self._progress.wait_for(lambda: self._written >= target, timeout_s)

    # -- writer thread --------------------------------------------------------------
    def _run(self, conn: sqlite3.Connection | None) -> None:
        while True:
            self._wake.wait(self._flush_interval_s)
            self._wake.clear()
            stopping = self._stopping  # read before draining: nothing appended after is lost
            if conn is None and time.monotonic() - self._last_open_attempt >= REOPEN_EVERY_S:
                conn = self._open()
            while self._pending:
                count = min(len(self._pending), self._batch_size)
                self._write(conn, [self._pending.popleft() for _ in range(count)])
            if stopping:
                break
        if conn is not None:
            conn.close()

    def _write(self, conn: sqlite3.Connection | None, batch: list[PredictionRow]) -> None:
        if not batch:
            return
        try:
            if conn is None:
                raise sqlite3.OperationalError("not open")
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT OR IGNORE INTO predictions "
                "(prediction_id, created_at, model_version, features, prediction, score, trace_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.prediction_id,
                        r.created_at,
                        r.model_version,
                        json.dumps(r.features, separators=(",", ":")),
                        r.prediction,
                        r.score,
                        r.trace_id,
                    )
                    for r in batch
                ],
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn is not None and conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            self._dropped.add(len(batch), {"reason": "write_error"})
            self._log_failure(
                "prediction_log_write_failed", "prediction log write failed", exc, len(batch)
            )
        with self._progress:
            self._written += len(batch)
            self._progress.notify_all()

    # -- reads and feedback -----------------------------------------------------------
    def _read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if self._reader is None:
            raise sqlite3.OperationalError(f"prediction log {self.path} is not open")
        with self._reader_lock:
            return self._reader.execute(sql, params).fetchall()

    def _settle(self) -> None:
        """Reads see what was answered: write out what is still buffered first."""
        if self._written < self._submitted:  # buffered, or popped and being written
            self.flush()

    def get(self, prediction_id: str) -> PredictionRow | None:
        self._settle()
        rows = self._read(
            f"SELECT {_COLUMNS} FROM predictions WHERE prediction_id = ?", (prediction_id,)
        )
        return _row(rows[0]) if rows else None

    def between(self, start: float, end: float, limit: int = 1000) -> list[PredictionRow]:
        """Predictions made in [start, end), oldest first."""
        self._settle()
        rows = self._read(
            f"SELECT {_COLUMNS} FROM predictions WHERE created_at >= ? AND created_at < ? "
            "ORDER BY created_at LIMIT ?",
            (start, end, limit),
        )
        return [_row(r) for r in rows]

    def recent_labelled(self, limit: int) -> list[PredictionRow]:
        """The newest labelled rows (seed of the quality window at start); none while the
        log cannot be opened: the service starts with an empty window instead of failing."""
        if self._reader is None:
            return []
        rows = self._read(
            f"SELECT {_COLUMNS} FROM predictions WHERE labelled_at IS NOT NULL "
            "ORDER BY labelled_at DESC LIMIT ?",
            (limit,),
        )
        return [_row(r) for r in reversed(rows)]

    def label(self, prediction_id: str, label: str) -> tuple[FeedbackOutcome, PredictionRow | None]:
        """Attach the true label once; the same label again changes nothing."""
        row = self.get(prediction_id)
        if row is None:
            return FeedbackOutcome.UNKNOWN_ID, None
        if row.true_label is not None:
            same = row.true_label == label
            return (FeedbackOutcome.DUPLICATE if same else FeedbackOutcome.CONFLICT), row
        now = time.time()
        with self._reader_lock:
            assert self._reader is not None
            updated = self._reader.execute(
                "UPDATE predictions SET true_label = ?, labelled_at = ? "
                "WHERE prediction_id = ? AND true_label IS NULL",
                (label, now, prediction_id),
            ).rowcount
        if not updated:  # another request labelled it between our read and write
            return self.label(prediction_id, label)
        return FeedbackOutcome.ACCEPTED, PredictionRow(
            **{**row.__dict__, "true_label": label, "labelled_at": now}
        )
