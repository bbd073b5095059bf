"""The prediction store on PostgreSQL (psycopg 3), shared by every replica and the monitor.

Same schema and behaviour as the SQLite store. What differs is concurrency: several
replicas write at once, and a sequence number taken by one transaction may commit after a
higher number taken by another. The feeds handle that with transaction ids rather than a
timer. Every write transaction takes its transaction id (``pg_current_xact_id()``) before
it takes any sequence number, so a number missing below a visible one belongs to a
transaction that already had its id when the feed read. When the feed first sees such a
gap it notes the highest transaction id then running (``pg_stat_activity.backend_xid``,
read after the rows' snapshot); the gap is passed only in a later read whose snapshot's
``xmin`` (no running transaction is older) is above that id: every writer that could hold
the number has then committed or rolled back, and that later snapshot shows the row or
proves the gap permanent. (A snapshot's ``xmax`` is no bound here: a transaction that took
its id after the last completed one is running but above ``xmax``; a test caught that.) A
long transaction elsewhere on the server only delays the feed; it never makes it skip a
row. The replicas and the monitor connect as one role, so each sees the others' sessions.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import psycopg
from opentelemetry import metrics

from .base import INSERT_LABEL, INSERT_PREDICTION, PredictionStore, insert_values
from .rows import PredictionRow
from .schema import POSTGRES, SCHEMA_VERSION, SchemaVersionError, check_version, create_statements

_SCHEMA_LOCK = 7_240_311  # advisory lock id: one starter creates or upgrades at a time
_SNAPSHOT_XMIN = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
_NEWEST_RUNNING = (
    "SELECT coalesce(max(backend_xid::text::bigint), 0) FROM pg_stat_activity"
    " WHERE backend_xid IS NOT NULL"
)


def _pg(sql: str) -> str:
    """The shared statements use ``?``; psycopg wants ``%s``."""
    return sql.replace("?", "%s")


def redact(url: str) -> str:
    """The URL without its password, for logs and errors."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def migrate(conn: psycopg.Connection[Any], where: str) -> None:
    """Create the schema, or refuse one this code cannot read."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema()"
            )
        }
        if "schema_version" in tables:
            found = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            check_version(found[0] if found else 0, where)
        elif "predictions" in tables:
            raise SchemaVersionError(
                f"prediction store {where} has a predictions table but no schema_version: "
                "not a modelobs store this version can read"
            )
        else:
            for statement in create_statements(POSTGRES):
                conn.execute(statement)
    assert SCHEMA_VERSION == 2  # the next version adds its upgrade steps above


class PostgresStore(PredictionStore):
    def __init__(self, url: str, meter: metrics.Meter, **options: Any) -> None:
        super().__init__(meter, **options)
        self.url = url
        self.where = redact(url)
        self._reader: psycopg.Connection[Any] | None = None
        self._reader_lock = threading.Lock()
        self._reads = 0  # feed reads so far: a gap is never passed in the read that saw it

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True, connect_timeout=10)

    def _open(self) -> None:
        self._reader = self._connect()
        migrate(self._reader, self.where)

    def _close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _open_writer(self) -> psycopg.Connection[Any]:
        return self._connect()

    def _insert(self, conn: psycopg.Connection[Any], batch: list[PredictionRow]) -> None:
        with conn.transaction(), conn.cursor() as cursor:
            cursor.execute("SELECT pg_current_xact_id()")  # before any seq: see the docstring
            cursor.executemany(_pg(INSERT_PREDICTION), insert_values(batch))

    def _close_writer(self, conn: psycopg.Connection[Any]) -> None:
        conn.close()

    def _reader_conn(self) -> psycopg.Connection[Any]:
        """The reader connection, reopened when the server dropped it."""
        if self._reader is None:
            raise RuntimeError("prediction store not started")
        if self._reader.closed or self._reader.broken:
            self._reader = self._connect()
        return self._reader

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._reader_lock:
            return self._reader_conn().execute(_pg(sql), params).fetchall()

    def _insert_label(self, prediction_id: str, label: str, now: float) -> bool:
        with self._reader_lock:
            conn = self._reader_conn()
            with conn.transaction():
                conn.execute("SELECT pg_current_xact_id()")  # before the labels seq
                cursor = conn.execute(_pg(INSERT_LABEL), (prediction_id, label, now, prediction_id))
                return cursor.rowcount == 1

    def _feed_rows(self, sql: str, params: tuple[Any, ...]) -> tuple[list[tuple[Any, ...]], Any]:
        """The rows, and (read number, snapshot xmin, newest running transaction id after
        the snapshot was taken)."""
        with self._reader_lock:
            conn = self._reader_conn()
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                (xmin,) = conn.execute(_SNAPSHOT_XMIN).fetchone() or (0,)
                rows = conn.execute(_pg(sql), params).fetchall()
                (newest_running,) = conn.execute(_NEWEST_RUNNING).fetchone() or (0,)
            finally:
                conn.execute("COMMIT")
            self._reads += 1
            return rows, (self._reads, xmin, newest_running)

    def _gap_settled(self, first_seen: Any, now: Any) -> bool:
        """Settled in a later read once every transaction running when the gap was first
        seen has ended (all are at most ``newest_running``, and none running is below
        ``xmin``)."""
        read_then, _, newest_running_then = first_seen
        read_now, xmin_now, _ = now
        return read_now > read_then and xmin_now > newest_running_then
