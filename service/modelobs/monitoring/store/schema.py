"""The store's tables, one layout for SQLite and PostgreSQL, and its versions.

Version 1 was the unversioned SQLite file of the single-process prediction log (labels in
columns of ``predictions``, no sequence). Version 2 adds a ``schema_version`` table, a
``seq`` on every prediction and a ``labels`` table with its own ``seq``: the two
incremental feeds read by sequence, and a label is its own row, so accepting it exactly
once is a unique constraint rather than a read-then-write. A database newer than this
code knows is refused: reading a layout we do not know would silently misread it.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 2


class SchemaVersionError(RuntimeError):
    """The database's schema is one this modelobs cannot read."""


@dataclass(frozen=True)
class Dialect:
    """The few type names that differ between the two databases."""

    name: str
    sequence: str  # a primary key filled from an ever-increasing sequence
    double: str  # an 8-byte float (PostgreSQL's REAL is 4 bytes)


SQLITE = Dialect("sqlite", "INTEGER PRIMARY KEY AUTOINCREMENT", "REAL")
POSTGRES = Dialect(
    "postgresql", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "DOUBLE PRECISION"
)


def create_statements(d: Dialect) -> list[str]:
    """Statements creating version 2 from nothing (run in one transaction)."""
    return [
        f"""CREATE TABLE predictions (
            seq           {d.sequence},
            prediction_id TEXT NOT NULL UNIQUE,
            created_at    {d.double} NOT NULL,
            model_version TEXT NOT NULL,
            features      TEXT NOT NULL,
            prediction    TEXT NOT NULL,
            score         {d.double} NOT NULL,
            trace_id      TEXT
        )""",
        "CREATE INDEX predictions_created_at ON predictions (created_at)",
        f"""CREATE TABLE labels (
            seq           {d.sequence},
            prediction_id TEXT NOT NULL UNIQUE,
            true_label    TEXT NOT NULL,
            labelled_at   {d.double} NOT NULL
        )""",
        "CREATE TABLE schema_version (version INTEGER NOT NULL)",
        f"INSERT INTO schema_version (version) VALUES ({SCHEMA_VERSION})",
    ]


# Version 1 (SQLite only) to 2: rebuild the table (SQLite cannot add a sequence key to an
# existing table), predictions in the order they were made, labels in the order they came.
SQLITE_UPGRADE_FROM_1 = [
    "DROP INDEX IF EXISTS predictions_created_at",
    "DROP INDEX IF EXISTS predictions_labelled_at",
    "ALTER TABLE predictions RENAME TO predictions_v1",
    *create_statements(SQLITE),
    "INSERT INTO predictions (prediction_id, created_at, model_version, features, prediction,"
    " score, trace_id) SELECT prediction_id, created_at, model_version, features, prediction,"
    " score, trace_id FROM predictions_v1 ORDER BY created_at, rowid",
    "INSERT INTO labels (prediction_id, true_label, labelled_at)"
    " SELECT prediction_id, true_label, coalesce(labelled_at, created_at) FROM predictions_v1"
    " WHERE true_label IS NOT NULL ORDER BY labelled_at, rowid",
    "DROP TABLE predictions_v1",
]


def check_version(found: int, where: str) -> None:
    """Refuse a schema newer than this code, naming both versions."""
    if found > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"prediction store {where} has schema version {found}, newer than the version "
            f"{SCHEMA_VERSION} this modelobs knows: upgrade modelobs, or point "
            "MODELOBS_PREDICTION_DB at another store"
        )
