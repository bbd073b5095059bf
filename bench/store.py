"""Benchmark: predictions per second the prediction store absorbs, SQLite and PostgreSQL,
with one writer (one replica) and two writers (two replicas) at once.

Each writer is its own process (as replicas are), with the store the model service uses
(open_store, default batch size and flush interval). It submits its rows one per call, as
the request path does, then waits until all are committed. The rate is rows committed per
second of wall time from the common start to the last writer's final commit. CPU seconds
per 1,000 rows are given for the writers and, for PostgreSQL, for the server processes:
wall-time rates on this shared 2-core machine are noisy, CPU per row much less so. Every
row is counted in the store afterwards (none dropped). Run from the repo root:

    .venv/bin/python bench/store.py            # 50,000 rows per writer
    .venv/bin/python bench/store.py --quick    # 10,000 rows per writer
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
from opentelemetry.sdk.metrics import MeterProvider

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deploy.native.net import free_port
from deploy.native.postgres import PostgresServer

from modelobs.model.data import EXAMPLE_RECORD
from modelobs.monitoring.store import PredictionRow, new_prediction_id, open_store
from modelobs.settings import Settings
from results_file import write_results


def _writer(db: str, rows: int, ready: Any, start: Any, out: Any) -> None:
    """One replica: submit ``rows`` one per call, then wait until all are committed."""
    store = open_store(
        Settings(prediction_db=db, prediction_log_queue=rows + 1), MeterProvider().get_meter("b")
    )
    store.start()
    made = [
        PredictionRow(new_prediction_id(), time.time(), "1.0.0", EXAMPLE_RECORD, "stay", 0.9)
        for _ in range(rows)
    ]
    ready.put(True)
    start.wait()
    cpu0, t0 = time.process_time(), time.perf_counter()
    submit_s = 0.0
    dropped = 0
    for row in made:
        s0 = time.perf_counter()
        dropped += store.submit((row,))
        submit_s += time.perf_counter() - s0
    assert store.flush(timeout_s=600), "writer did not catch up"
    out.put(
        {
            "done_at": time.time(),
            "wall_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - cpu0,
            "submit_us_per_row": submit_s / rows * 1e6,
            "dropped": dropped,
        }
    )
    store.stop()


def _server_cpu(server: PostgresServer | None) -> float:
    """CPU seconds of the server so far: postmaster, live backends, and ended backends
    (reaped by the postmaster, so in its children's times)."""
    if server is None:
        return 0.0
    pid = int((server.data / "postmaster.pid").read_text().split()[0])
    root = psutil.Process(pid)
    t = root.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for proc in root.children(recursive=True):
        try:
            c = proc.cpu_times()
            total += c.user + c.system
        except psutil.NoSuchProcess:
            pass  # ended in between: counted once reaped
    return total


def _count(db: str) -> int:
    if db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db) as conn:
            return conn.execute("SELECT count(*) FROM predictions").fetchone()[0]
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM predictions").fetchone()[0]


def run(db: str, writers: int, rows: int, server: PostgresServer | None) -> dict[str, Any]:
    schema = open_store(Settings(prediction_db=db), MeterProvider().get_meter("b"))
    schema.start()  # created once, before the writers race to it
    schema.stop()
    ctx = mp.get_context("spawn")
    ready, start, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(db, rows, ready, start, out)) for _ in range(writers)
    ]
    for p in procs:
        p.start()
    for _ in procs:  # each writer has built its rows
        ready.get(timeout=120)
    server_cpu0 = _server_cpu(server)
    began = time.time()
    start.set()
    results = [out.get(timeout=900) for _ in procs]
    for p in procs:
        p.join()
    wall = max(r["done_at"] for r in results) - began
    total = writers * rows
    stored = _count(db)
    assert stored == total and not any(r["dropped"] for r in results), (stored, results)
    return {
        "writers": writers,
        "rows": total,
        "rows_per_s": round(total / wall),
        "writer_cpu_s_per_1000": round(sum(r["cpu_s"] for r in results) / total * 1000, 4),
        "server_cpu_s_per_1000": round((_server_cpu(server) - server_cpu0) / total * 1000, 4),
        "submit_us_per_row": round(sum(r["submit_us_per_row"] for r in results) / writers, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000, help="rows per writer")
    parser.add_argument("--quick", action="store_true", help="10,000 rows per writer")
    args = parser.parse_args()
    rows = 10_000 if args.quick else args.rows
    figures: dict[str, list[dict[str, Any]]] = {"sqlite": [], "postgresql": []}
    server = PostgresServer(free_port()).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for writers in (1, 2):
                sqlite_db = str(Path(tmp) / f"w{writers}.db")
                figures["sqlite"].append(run(sqlite_db, writers, rows, None))
                pg_db = server.create_database(f"bench_{uuid.uuid4().hex[:8]}")
                figures["postgresql"].append(run(pg_db, writers, rows, server))
    finally:
        server.stop()
    columns = ("store", "writers", "rows/s", "writer CPU", "server CPU", "submit")
    print("{:<11} {:>7} {:>8} {:>11} {:>11} {:>8}".format(*columns))
    for store, runs in figures.items():
        for r in runs:
            print(
                f"{store:<11} {r['writers']:>7} {r['rows_per_s']:>8} "
                f"{r['writer_cpu_s_per_1000']:>9.3f} s {r['server_cpu_s_per_1000']:>9.3f} s "
                f"{r['submit_us_per_row']:>5.1f} µs"
            )
    print("(CPU seconds per 1,000 rows; submit: request-path cost per row)")
    path = write_results("store", {"rows_per_writer": rows, "results": figures})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
