"""The prediction store on PostgreSQL (psycopg 3), shared by every replica and the monitor.

Same schema and behaviour as the SQLite store. What differs is concurrency: several
replicas write at once, and a sequence number taken by one transaction may commit after a
higher number taken by another. The feeds handle that with the snapshot's transaction
ids rather than a timer. Every write transaction takes its transaction id
(``pg_current_xact_id()``) before it takes any sequence number, so a number missing below
a visible one belongs to a transaction that was still running at the reader's snapshot,
hence below that snapshot's ``xmax``. Once the oldest running transaction (``xmin``) has
passed that ``xmax``, every such writer has committed or rolled back, and a re-read shows
the row or proves the gap permanent. A long transaction elsewhere in the database only
delays the feed; it never makes it skip a row.
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
_SNAPSHOT = (
    "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint,"
    " pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
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

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True, connect_timeout=10)

    def _open(self) -> None:
        self._reader = self._connect()
        try:
            migrate(self._reader, self.where)
        except BaseException:
            self._close()
            raise

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
        """The rows and the (xmin, xmax) of the one snapshot they were read in."""
        with self._reader_lock:
            conn = self._reader_conn()
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                horizon = conn.execute(_SNAPSHOT).fetchone()
                rows = conn.execute(_pg(sql), params).fetchall()
            finally:
                conn.execute("COMMIT")
        return rows, horizon

    def _gap_settled(self, first_seen: Any, now: Any) -> bool:
        """Settled once every transaction running when the gap was first seen has ended."""
        _, xmax_then = first_seen
        xmin_now, _ = now
        return xmin_now >= xmax_then
