"""The prediction store on SQLite and on a real PostgreSQL: look-ups, feedback exactly once,
the incremental feeds (no row skipped when sequence numbers commit out of order), the
schema version, and a graceful stop that writes everything submitted."""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from deploy.native.postgres import PostgresServer
from opentelemetry.sdk.metrics import MeterProvider

from modelobs.monitoring.store import (
    SCHEMA_VERSION,
    FeedbackOutcome,
    PredictionRow,
    PredictionStore,
    SchemaVersionError,
    id_time,
    new_prediction_id,
    open_store,
)
from modelobs.settings import Settings

from .postgres import fresh_database

OLD_SQLITE_SCHEMA = """
CREATE TABLE predictions (
    prediction_id TEXT PRIMARY KEY, created_at REAL NOT NULL, model_version TEXT NOT NULL,
    features TEXT NOT NULL, prediction TEXT NOT NULL, score REAL NOT NULL, trace_id TEXT,
    true_label TEXT, labelled_at REAL
);
CREATE INDEX predictions_created_at ON predictions (created_at);
CREATE INDEX predictions_labelled_at ON predictions (labelled_at) WHERE labelled_at IS NOT NULL;
"""


def _row(i: int, pid: str | None = None) -> PredictionRow:
    return PredictionRow(pid or f"id-{i}", 1000.0 + i, "1.0.0", {"age": i}, "stay", 0.9, None)


def _store(db: str, **overrides: Any) -> PredictionStore:
    settings = Settings(prediction_db=db, **overrides)
    return open_store(settings, MeterProvider().get_meter("t"))


def _drain(store: PredictionStore, feed: str, cursor: int = 0, limit: int = 7) -> list[str]:
    """Every id a feed has after ``cursor``, read ``limit`` at a time."""
    ids: list[str] = []
    while True:
        rows, cursor = getattr(store, feed)(cursor, limit)
        if not rows:
            return ids
        ids += [r.prediction_id for r in rows]


def test_uuid7_ids_carry_their_time() -> None:
    before = new_prediction_id()
    ids = [new_prediction_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert sorted([before, ids[-1]]) == [before, ids[-1]]  # time-ordered as text
    minted = id_time(before)
    assert minted is not None and abs(minted - __import__("time").time()) < 60
    assert id_time(str(uuid.uuid4())) is None and id_time("no-such-id") is None


def test_lookups_feeds_and_graceful_stop(store_db: str) -> None:
    store = _store(store_db)
    store.start()
    assert store.submit(_row(i) for i in range(50)) == 0
    assert store.get("id-7") == _row(7)  # a look-up sees what this process submitted
    assert store.get("nope") is None
    assert [r.prediction_id for r in store.between(1010.0, 1013.0)] == ["id-10", "id-11", "id-12"]
    assert _drain(store, "predictions_after") == [f"id-{i}" for i in range(50)]
    rows, cursor = store.predictions_after(0, 10)
    assert [r.prediction_id for r in rows] == [f"id-{i}" for i in range(10)]
    assert _drain(store, "predictions_after", cursor) == [f"id-{i}" for i in range(10, 50)]

    for pid in ("id-30", "id-3", "id-17"):
        assert store.label(pid, "churn")[0] is FeedbackOutcome.ACCEPTED
    labelled, cursor = store.labels_after(0, 100)
    assert [r.prediction_id for r in labelled] == ["id-30", "id-3", "id-17"]  # arrival order
    assert {r.true_label for r in labelled} == {"churn"}
    assert store.labels_after(cursor, 100) == ([], cursor)
    assert [r.prediction_id for r in store.recent_labelled(2)] == ["id-3", "id-17"]

    store.submit(_row(i) for i in range(50, 5050))
    store.stop()  # graceful: everything submitted is written
    reopened = _store(store_db)
    reopened.start()
    assert len(_drain(reopened, "predictions_after", limit=1000)) == 5050
    reopened.stop()


def test_feedback_outcomes(store_db: str) -> None:
    store = _store(store_db, feedback_wait_s=0.3)
    store.start()
    pid = new_prediction_id()
    store.submit([_row(0, pid)])
    outcome, row = store.label(pid, "stay")
    assert outcome is FeedbackOutcome.ACCEPTED and row is not None and row.true_label == "stay"
    assert store.label(pid, "stay")[0] is FeedbackOutcome.DUPLICATE
    outcome, row = store.label(pid, "churn")
    assert outcome is FeedbackOutcome.CONFLICT and row is not None and row.true_label == "stay"
    assert store.get(pid).true_label == "stay"  # type: ignore[union-attr]
    assert store.label(str(uuid.uuid4()), "stay") == (FeedbackOutcome.UNKNOWN_ID, None)
    # A fresh time-ordered id nobody made: waited for, then unknown all the same.
    assert store.label(new_prediction_id(), "stay") == (FeedbackOutcome.UNKNOWN_ID, None)
    assert _drain(store, "labels_after") == [pid]
    store.stop()


def test_label_waits_for_a_prediction_still_in_another_replicas_buffer(store_db: str) -> None:
    """The race of issue 11: the label reaches replica A while the prediction sits in B's
    buffer (B flushes every 0.5 s). A recent UUIDv7 id is waited for, so it is accepted."""
    a = _store(store_db, feedback_wait_s=5.0)
    b = _store(store_db, prediction_log_flush_interval_s=0.5)
    a.start()
    b.start()
    pid = new_prediction_id()
    b.submit([_row(0, pid)])
    outcome, row = a.label(pid, "churn")
    assert outcome is FeedbackOutcome.ACCEPTED and row is not None and row.prediction_id == pid
    a.stop()
    b.stop()


def test_two_concurrent_writers_feed_every_row_exactly_once(store_db: str) -> None:
    writers = [_store(store_db, prediction_log_flush_interval_s=0.01) for _ in range(2)]
    reader = _store(store_db)
    for store in (*writers, reader):
        store.start()
    per_writer = 3000
    done = threading.Event()

    flushed: list[bool] = []

    def write(n: int, store: PredictionStore) -> None:
        for start in range(0, per_writer, 50):
            store.submit(_row(i, f"w{n}-{i}") for i in range(start, start + 50))
        flushed.append(store.flush(timeout_s=300))  # a loaded machine writes slowly

    threads = [threading.Thread(target=write, args=(n, s)) for n, s in enumerate(writers)]
    for t in threads:
        t.start()
    seen: list[str] = []
    cursor = 0
    while not done.is_set():  # read while both write: the feed races the commits
        if not any(t.is_alive() for t in threads):
            done.set()
        rows, cursor = reader.predictions_after(cursor, 200)
        seen += [r.prediction_id for r in rows]
    assert flushed == [True, True]
    seen += _drain(reader, "predictions_after", cursor, 200)
    assert len(seen) == len(set(seen)) == 2 * per_writer
    for store in (*writers, reader):
        store.stop()


def test_postgres_feed_waits_for_a_sequence_number_that_commits_late(
    postgres_server: PostgresServer,
) -> None:
    """Transaction 1 takes seq 1 and commits after transaction 2 committed seq 2: the feed
    holds at 0 until 1 commits, then delivers both; a rolled-back number is passed over."""
    url = fresh_database(postgres_server)
    store = _store(url)
    store.start()
    insert = (
        "INSERT INTO predictions (prediction_id, created_at, model_version, features,"
        " prediction, score) VALUES (%s, 1, '1', '{}', 'stay', 0.5)"
    )
    with psycopg.connect(url) as slow, psycopg.connect(url, autocommit=True) as fast:
        slow.execute("SELECT pg_current_xact_id()")
        slow.execute(insert, ("late",))  # seq 1, not committed
        fast.execute(insert, ("early",))  # seq 2, committed
        assert store.predictions_after(0, 10) == ([], 0)
        slow.commit()
        rows, cursor = store.predictions_after(0, 10)
        assert [r.prediction_id for r in rows] == ["late", "early"] and cursor == 2

        slow.execute("SELECT pg_current_xact_id()")
        slow.execute(insert, ("rolled-back",))  # seq 3
        fast.execute(insert, ("after",))  # seq 4
        assert store.predictions_after(cursor, 10) == ([], 2)
        slow.rollback()
        rows, cursor = store.predictions_after(cursor, 10)
        assert [r.prediction_id for r in rows] == ["after"] and cursor == 4
    store.stop()


def test_old_unversioned_sqlite_file_is_upgraded_in_place(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    old = sqlite3.connect(db)
    old.executescript(OLD_SQLITE_SCHEMA)
    old.executemany(
        "INSERT INTO predictions VALUES (?, ?, '0.9.0', '{\"age\": 1}', 'stay', 0.7, NULL, ?, ?)",
        [("b", 2.0, "churn", 20.0), ("a", 1.0, "stay", 10.0), ("c", 3.0, None, None)],
    )
    old.commit()
    old.close()
    store = _store(str(db))
    store.start()
    assert _drain(store, "predictions_after") == ["a", "b", "c"]  # in the order made
    assert _drain(store, "labels_after") == ["a", "b"]  # in the order labelled
    assert store.get("b") == PredictionRow(
        "b", 2.0, "0.9.0", {"age": 1}, "stay", 0.7, None, "churn", 20.0
    )
    assert store.label("c", "stay")[0] is FeedbackOutcome.ACCEPTED
    store.stop()
    version = sqlite3.connect(db).execute("SELECT version FROM schema_version").fetchall()
    assert version == [(SCHEMA_VERSION,)]


def test_newer_schema_is_refused_with_a_clear_error(store_db: str) -> None:
    first = _store(store_db)
    first.start()
    first.stop()
    newer = SCHEMA_VERSION + 1
    if store_db.startswith("postgresql://"):
        with psycopg.connect(store_db, autocommit=True) as conn:
            conn.execute("UPDATE schema_version SET version = %s", (newer,))
    else:
        with sqlite3.connect(store_db) as conn:
            conn.execute("UPDATE schema_version SET version = ?", (newer,))
    with pytest.raises(SchemaVersionError, match=f"schema version {newer}, newer than"):
        _store(store_db).start()


def test_docs_state_the_store_defaults_and_schema_version() -> None:
    repo = Path(__file__).resolve().parent.parent
    readme = (repo / "README.md").read_text()
    contract = (repo / "docs" / "contract.md").read_text()
    fields = Settings.model_fields

    def row(variable: str) -> str:
        return next(line for line in readme.splitlines() if line.startswith(f"| `{variable}`"))

    batch, interval = fields["prediction_log_batch"], fields["prediction_log_flush_interval_s"]
    assert f"| {batch.default} / {interval.default} |" in row("MODELOBS_PREDICTION_LOG_BATCH")
    wait = fields["feedback_wait_s"].default
    assert f"| {wait} |" in row("MODELOBS_FEEDBACK_WAIT_S")
    assert f"`MODELOBS_FEEDBACK_WAIT_S` ({wait:g} s)" in contract
    assert f"`MODELOBS_PREDICTION_LOG_FLUSH_INTERVAL_S`, {interval.default:g} s" in contract
    assert f"Version {SCHEMA_VERSION}\n  is current" in contract


def test_bench_readme_quotes_the_store_results() -> None:
    repo = Path(__file__).resolve().parent.parent
    results = json.loads((repo / "bench" / "results" / "store.json").read_text())
    readme = (repo / "bench" / "README.md").read_text()
    names = {"sqlite": "SQLite (WAL)", "postgresql": "PostgreSQL 15"}
    for store, runs in results["results"].items():
        for run in runs:
            assert f"| {names[store]} | {run['writers']} | {run['rows_per_s']} |" in readme


def test_postgres_predictions_without_a_schema_version_are_refused(
    postgres_server: PostgresServer,
) -> None:
    url = fresh_database(postgres_server)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE predictions (prediction_id TEXT PRIMARY KEY)")
    with pytest.raises(SchemaVersionError, match="no schema_version"):
        _store(url).start()
