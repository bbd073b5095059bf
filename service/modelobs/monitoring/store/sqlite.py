"""The prediction store in one SQLite file (WAL): the embedded default.

WAL lets readers (look-ups, feedback, the feeds) work while the writer commits. SQLite
runs one write transaction at a time and hands out ``seq`` inside it, so sequence order
is commit order: the feeds never see a number commit late, and a gap is final at once.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from opentelemetry import metrics

from .base import INSERT_LABEL, INSERT_PREDICTION, PredictionStore, insert_values
from .rows import PredictionRow
from .schema import SCHEMA_VERSION, SQLITE, SQLITE_UPGRADE_FROM_1, check_version, create_statements


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    """2+ from the version table; 1 for the unversioned layout; 0 for an empty file."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "schema_version" in tables:
        return conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
    return 1 if "predictions" in tables else 0


def migrate(conn: sqlite3.Connection, where: str) -> None:
    """Create or upgrade the schema in one write transaction (concurrent starters wait)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = schema_version(conn)
        check_version(found, where)
        steps = {0: create_statements(SQLITE), 1: SQLITE_UPGRADE_FROM_1}.get(found, [])
        for statement in steps:
            conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    assert schema_version(conn) == SCHEMA_VERSION


class SQLiteStore(PredictionStore):
    def __init__(self, path: Path, meter: metrics.Meter, **options: Any) -> None:
        super().__init__(meter, **options)
        self.path = path
        self.where = str(path)
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._reader = connect(self.path)
        try:
            migrate(self._reader, self.where)
        except BaseException:
            self._close()
            raise

    def _close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _open_writer(self) -> sqlite3.Connection:
        return connect(self.path)

    def _insert(self, conn: sqlite3.Connection, batch: list[PredictionRow]) -> None:
        try:
            conn.execute("BEGIN")
            conn.executemany(INSERT_PREDICTION, insert_values(batch))
            conn.execute("COMMIT")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _close_writer(self, conn: sqlite3.Connection) -> None:
        conn.close()

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        assert self._reader is not None, "prediction store not started"
        with self._reader_lock:
            return self._reader.execute(sql, params).fetchall()

    def _insert_label(self, prediction_id: str, label: str, now: float) -> bool:
        assert self._reader is not None, "prediction store not started"
        with self._reader_lock:
            cursor = self._reader.execute(INSERT_LABEL, (prediction_id, label, now, prediction_id))
            return cursor.rowcount == 1

    def _feed_rows(self, sql: str, params: tuple[Any, ...]) -> tuple[list[tuple[Any, ...]], Any]:
        return self._query(sql, params), None

    def _gap_settled(self, first_seen: Any, now: Any) -> bool:
        return True  # one writer at a time: a number missing below a visible one never comes
