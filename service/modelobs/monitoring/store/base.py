"""The prediction store's behaviour shared by SQLite and PostgreSQL: the buffer in front of
one writer thread, look-ups, feedback and the two incremental feeds.

The request path only appends rows to a bounded buffer (never waits); one writer thread
commits them in batches every ``flush_interval_s``. A full buffer drops the row, counts it
and logs it. On stop the writer drains the buffer before closing, so a graceful shutdown
loses nothing that was answered. A subclass supplies connections and the few statements
that differ between the databases.
"""

from __future__ import annotations

import contextvars
import json
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable
from typing import Any

from loguru import logger
from opentelemetry import metrics

from .ids import id_time
from .rows import FeedbackOutcome, PredictionRow
from .schema import SchemaVersionError

DROP_REASONS = ("queue_full", "write_error")
# A store that could not be opened (a read-only or missing volume, a database down) is
# tried again this often; open and write failures are logged at most this often (a dead
# disk fails every batch, and the counter counts every row).
REOPEN_EVERY_S = 1.0
LOG_EVERY_S = 5.0

_FIELDS = (
    "p.prediction_id, p.created_at, p.model_version, p.features, p.prediction, p.score, "
    "p.trace_id, l.true_label, l.labelled_at"
)
_JOINED = (
    f"SELECT {_FIELDS} FROM predictions p LEFT JOIN labels l ON l.prediction_id = p.prediction_id"
)
INSERT_PREDICTION = (
    "INSERT INTO predictions (prediction_id, created_at, model_version, features, prediction,"
    " score, trace_id) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (prediction_id) DO NOTHING"
)
# A label only for a prediction the store holds, and only the first one (unique key).
INSERT_LABEL = (
    "INSERT INTO labels (prediction_id, true_label, labelled_at) SELECT ?, ?, ?"
    " WHERE EXISTS (SELECT 1 FROM predictions WHERE prediction_id = ?)"
    " ON CONFLICT (prediction_id) DO NOTHING"
)
_FEEDS = {
    "predictions": f"SELECT p.seq, {_FIELDS} FROM predictions p"
    " LEFT JOIN labels l ON l.prediction_id = p.prediction_id"
    " WHERE p.seq > ? ORDER BY p.seq LIMIT ?",
    "labels": f"SELECT l.seq, {_FIELDS} FROM labels l"
    " JOIN predictions p ON p.prediction_id = l.prediction_id"
    " WHERE l.seq > ? ORDER BY l.seq LIMIT ?",
}


def insert_values(rows: Iterable[PredictionRow]) -> list[tuple[Any, ...]]:
    """Parameters of INSERT_PREDICTION, one tuple per row."""
    return [
        (
            r.prediction_id,
            r.created_at,
            r.model_version,
            json.dumps(r.features, separators=(",", ":")),
            r.prediction,
            r.score,
            r.trace_id,
        )
        for r in rows
    ]


def to_row(values: tuple[Any, ...] | list[Any]) -> PredictionRow:
    pid, created, version, features, prediction, score, trace_id, label, labelled = values
    return PredictionRow(
        pid, created, version, json.loads(features), prediction, score, trace_id, label, labelled
    )


class PredictionStore(ABC):
    """Bounded buffer in front of one writer thread, plus reads, feedback and feeds.

    The request path appends to a deque (no lock, no wake-up: waking the writer per row
    costs more than the row); the writer drains it every ``flush_interval_s``, or at once
    when :meth:`flush` or :meth:`stop` asks.
    """

    #: what the store is, for logs and errors (never a password)
    where: str

    def __init__(
        self,
        meter: metrics.Meter,
        *,
        queue_size: int = 10_000,
        batch_size: int = 1000,
        flush_interval_s: float = 0.1,
        recent_id_wait_s: float = 2.0,
    ) -> None:
        self._pending: deque[PredictionRow] = deque()
        self._capacity = queue_size
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._recent_id_wait_s = recent_id_wait_s
        self._submitted = 0  # only the event-loop thread writes this
        self._written = 0  # only the writer thread writes this
        self._wake = threading.Event()
        self._stopping = False
        self._progress = threading.Condition()
        self._thread: threading.Thread | None = None
        self._last_drop_log = 0.0
        self._last_failure_log = -LOG_EVERY_S
        self._last_open_attempt = 0.0
        self._opened = False
        self._gaps: dict[tuple[str, int], Any] = {}
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

    # -- what a database supplies -----------------------------------------------------
    @abstractmethod
    def _open(self) -> None:
        """Create or upgrade the schema and open the reader connection."""

    @abstractmethod
    def _close(self) -> None:
        """Close the reader connection."""

    @abstractmethod
    def _open_writer(self) -> Any:
        """A connection for the writer thread."""

    @abstractmethod
    def _insert(self, conn: Any, batch: list[PredictionRow]) -> None:
        """Commit one batch in one transaction; raise (rolled back) on failure."""

    @abstractmethod
    def _close_writer(self, conn: Any) -> None: ...

    @abstractmethod
    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Run one read on the reader connection (``?`` placeholders)."""

    @abstractmethod
    def _insert_label(self, prediction_id: str, label: str, now: float) -> bool:
        """Run INSERT_LABEL; True when this call stored the label."""

    @abstractmethod
    def _feed_rows(self, sql: str, params: tuple[Any, ...]) -> tuple[list[tuple[Any, ...]], Any]:
        """Rows of a feed query and a horizon token for :meth:`_gap_settled`."""

    @abstractmethod
    def _gap_settled(self, first_seen: Any, now: Any) -> bool:
        """Whether a missing sequence number first seen at horizon ``first_seen`` can no
        longer appear, judged at horizon ``now``."""

    # -- life cycle -----------------------------------------------------------------
    def start(self) -> None:
        """Open the store and start its writer. A store that cannot be opened (a read-only
        or missing volume, a database down) does not stop the service: predictions are
        served, their rows counted as dropped (``write_error``), and the writer opens it
        once it can. A schema this code must not read (SchemaVersionError) does stop it."""
        writer = self._reopen()
        # The writer logs in the context of whoever started it (its service's telemetry).
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run, writer), name="prediction-log-writer", daemon=True
        )
        self._thread.start()

    def _reopen(self) -> Any:
        """Schema and reader in place, and a writer connection; None when that failed."""
        self._last_open_attempt = time.monotonic()
        try:
            if not self._opened:
                self._open()
                self._opened = True
            return self._open_writer()
        except SchemaVersionError:
            self._close()
            raise
        except Exception as exc:  # any database or file-system failure: retried later
            if not self._opened:
                self._close()
            self._log_failure(
                logger.bind(event="prediction_log_open_failed", dropped=0),
                "cannot open the prediction store",
                exc,
            )
            return None

    def _log_failure(self, log: Any, what: str, exc: BaseException) -> None:
        """One ERROR line per LOG_EVERY_S at most, on ``log`` (bound with its event)."""
        now = time.monotonic()
        if now - self._last_failure_log >= LOG_EVERY_S:
            self._last_failure_log = now
            log.error("{} {}: {}", what, self.where, exc)

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
        self._close()
        self._opened = False

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
    def _run(self, conn: Any) -> None:
        while True:
            self._wake.wait(self._flush_interval_s)
            self._wake.clear()
            stopping = self._stopping  # read before draining: nothing appended after is lost
            if conn is None and time.monotonic() - self._last_open_attempt >= REOPEN_EVERY_S:
                conn = self._reopen()
            while self._pending:
                count = min(len(self._pending), self._batch_size)
                conn = self._write(conn, [self._pending.popleft() for _ in range(count)])
            if stopping:
                break
        if conn is not None:
            self._close_writer(conn)

    def _write(self, conn: Any, batch: list[PredictionRow]) -> Any:
        """Commit a batch; on failure count it dropped and reconnect for the next one."""
        try:
            if conn is None:
                raise ConnectionError("not open (retried every second)")
            self._insert(conn, batch)
        except Exception as exc:  # any database failure drops the batch, counted
            self._dropped.add(len(batch), {"reason": "write_error"})
            self._log_failure(
                logger.bind(event="prediction_log_write_failed", dropped=len(batch)),
                "prediction store write to",
                exc,
            )
            if conn is not None:
                self._close_writer(conn)
            conn = None
        with self._progress:
            self._written += len(batch)
            self._progress.notify_all()
        return conn

    # -- reads and feedback -----------------------------------------------------------
    def _settle(self) -> None:
        """Reads see what this process answered: write out what is still buffered first."""
        if self._written < self._submitted:  # buffered, or popped and being written
            self.flush()

    def _wait_deadline(self, prediction_id: str) -> float | None:
        """A monotonic deadline when the id was minted recently enough that another replica
        may still hold it in its buffer; None when a miss is final at once."""
        minted = id_time(prediction_id)
        if minted is None:
            return None
        age = time.time() - minted
        if abs(age) > self._recent_id_wait_s:  # old, or from a clock far ahead
            return None
        return time.monotonic() + self._recent_id_wait_s - max(age, 0.0)

    def _until_found(self, prediction_id: str, attempt: Any) -> Any:
        """Run ``attempt`` until it finds the id, waiting only for a recent id."""
        deadline: float | None = None
        pause = 0.005
        while True:
            found = attempt()
            if found is not None:
                return found
            if deadline is None:
                deadline = self._wait_deadline(prediction_id)
            remaining = (deadline or 0.0) - time.monotonic()
            if deadline is None or remaining <= 0:
                return None
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.05)

    def _get_now(self, prediction_id: str) -> PredictionRow | None:
        rows = self._query(f"{_JOINED} WHERE p.prediction_id = ?", (prediction_id,))
        return to_row(rows[0]) if rows else None

    def get(self, prediction_id: str) -> PredictionRow | None:
        """The stored prediction; a miss for an id minted moments ago (UUIDv7) is retried
        until ``recent_id_wait_s`` after it was minted, since another replica may not
        have written it yet."""
        self._settle()
        return self._until_found(prediction_id, lambda: self._get_now(prediction_id))

    def between(self, start: float, end: float, limit: int = 1000) -> list[PredictionRow]:
        """Predictions made in [start, end), oldest first."""
        self._settle()
        rows = self._query(
            f"{_JOINED} WHERE p.created_at >= ? AND p.created_at < ? ORDER BY p.created_at LIMIT ?",
            (start, end, limit),
        )
        return [to_row(r) for r in rows]

    def recent_labelled(self, limit: int) -> list[PredictionRow]:
        """The last ``limit`` labelled predictions, in the order the labels came; none while
        the store cannot be opened (the service starts with an empty window)."""
        if not self._opened:
            return []
        rows = self._query(
            f"SELECT {_FIELDS} FROM labels l JOIN predictions p"
            " ON p.prediction_id = l.prediction_id ORDER BY l.seq DESC LIMIT ?",
            (limit,),
        )
        return [to_row(r) for r in reversed(rows)]

    def label(self, prediction_id: str, label: str) -> tuple[FeedbackOutcome, PredictionRow | None]:
        """Attach the true label exactly once, whichever replica made the prediction.

        The label is its own row with a unique key, inserted only when the prediction is
        in the store: one statement decides, so two replicas racing cannot both accept.
        A miss for a recent UUIDv7 id is retried briefly (see :meth:`get`); the same
        label again is a duplicate, a different one a conflict.
        """
        self._settle()

        def attempt() -> tuple[FeedbackOutcome, PredictionRow] | None:
            while True:
                accepted = self._insert_label(prediction_id, label, time.time())
                row = self._get_now(prediction_id)
                if row is None:
                    return None
                if accepted:
                    return FeedbackOutcome.ACCEPTED, row
                if row.true_label is not None:
                    same = row.true_label == label
                    return (FeedbackOutcome.DUPLICATE if same else FeedbackOutcome.CONFLICT), row
                # The prediction committed between the insert and the read: insert again.

        found = self._until_found(prediction_id, attempt)
        return found if found is not None else (FeedbackOutcome.UNKNOWN_ID, None)

    # -- incremental feeds (for the monitor) ------------------------------------------
    def feed_heads(self) -> tuple[int, int]:
        """The highest sequence number of the predictions feed and of the labels feed (0 when
        empty): a reader that needs only the newest N rows starts its cursor N below."""
        predictions = self._query("SELECT COALESCE(MAX(seq), 0) FROM predictions", ())
        labels = self._query("SELECT COALESCE(MAX(seq), 0) FROM labels", ())
        return int(predictions[0][0]), int(labels[0][0])

    def predictions_after(self, cursor: int, limit: int) -> tuple[list[PredictionRow], int]:
        """Predictions committed after ``cursor`` in sequence order, and the next cursor.

        Start at 0. Reads use the sequence index, never rescan. A row never goes missing
        even when its sequence number committed after a higher one (concurrent writers on
        PostgreSQL): the feed stops before a missing number until that number can no
        longer appear (see :meth:`_gap_settled`), so the cursor only passes a number that
        was delivered or is known to be a permanent gap (a rolled-back insert).
        """
        return self._feed("predictions", cursor, limit)

    def labels_after(self, cursor: int, limit: int) -> tuple[list[PredictionRow], int]:
        """Labelled predictions in the order the labels arrived (``true_label`` set), and
        the next cursor; same guarantees as :meth:`predictions_after`."""
        return self._feed("labels", cursor, limit)

    def _feed(self, name: str, cursor: int, limit: int) -> tuple[list[PredictionRow], int]:
        rows, horizon = self._feed_rows(_FEEDS[name], (cursor, limit))
        out: list[PredictionRow] = []
        expected = cursor + 1
        for values in rows:
            seq = values[0]
            if seq != expected:  # numbers expected..seq-1 are not visible (yet?)
                first_seen = self._gaps.setdefault((name, expected), horizon)
                if not self._gap_settled(first_seen, horizon):
                    break
            out.append(to_row(values[1:]))
            expected = seq + 1
        next_cursor = expected - 1
        for key in [k for k in self._gaps if k[0] == name and k[1] <= next_cursor]:
            del self._gaps[key]
        return out, next_cursor
