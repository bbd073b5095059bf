"""The prediction log: nothing answered is lost on a graceful stop (each store); look-ups;
drops counted. The store itself: test_store.py."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from modelobs.monitoring.prediction_log import PredictionLog, PredictionRow
from modelobs.monitoring.store import id_time

from .conftest import VALID_RECORD, Stack
from .stores import model_env, model_process, stored
from .waiting import wait_until_async


def _row(i: int) -> PredictionRow:
    return PredictionRow(f"id-{i}", 1000.0 + i, "1.0.0", {"age": i}, "stay", 0.9, None)


def test_lookups_by_id_and_time_range(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "p.db", MeterProvider().get_meter("t"))
    log.start()
    assert log.submit(_row(i) for i in range(50)) == 0
    assert log.flush()
    assert log.get("id-7") == _row(7)
    assert log.get("nope") is None
    assert [r.prediction_id for r in log.between(1010.0, 1013.0)] == ["id-10", "id-11", "id-12"]
    log.stop()
    conn = sqlite3.connect(tmp_path / "p.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT count(*) FROM predictions").fetchone()[0] == 50


def test_full_queue_drops_are_counted(tmp_path: Path) -> None:
    reader = InMemoryMetricReader()
    log = PredictionLog(
        tmp_path / "p.db", MeterProvider(metric_readers=[reader]).get_meter("t"), queue_size=10
    )
    # Not started: nothing drains the queue, so the 11th row on is dropped.
    assert log.submit(_row(i) for i in range(25)) == 15
    points = {
        m.name: m.data.data_points
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    dropped = points["modelobs.prediction_log.dropped"]
    assert {p.attributes["reason"]: p.value for p in dropped} == {
        "queue_full": 15,
        "write_error": 0,
    }
    assert [p.value for p in points["modelobs.prediction_log.queue.size"]] == [10]


def test_rows_carry_the_trace_id(store_stack: Stack) -> None:
    stack = store_stack
    response = httpx.post(f"{stack.model_url}/predict", json={"record": VALID_RECORD})
    pid = response.json()["predictions"][0]["prediction_id"]
    server = next(s for s in stack.model.finished_spans() if s.name == "POST /predict")
    stored = httpx.get(f"{stack.model_url}/predictions/{pid}").json()
    assert stored["trace_id"] == format(server.context.trace_id, "032x")
    assert stored["features"] == VALID_RECORD
    assert stored["model_version"] == "1.0.0"
    now = time.time()
    listed = httpx.get(
        f"{stack.model_url}/predictions", params={"start": now - 60, "end": now + 1}
    ).json()["predictions"]
    assert pid in [p["prediction_id"] for p in listed]
    missing = httpx.get(f"{stack.model_url}/predictions/nope")
    assert missing.status_code == 404


async def _hammer(url: str, answered: list[str], stop_at: float) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:

        async def worker() -> None:
            while time.monotonic() < stop_at:
                try:
                    r = await client.post("/predict", json={"records": [VALID_RECORD] * 4})
                except httpx.HTTPError:
                    return  # the server went away: stop like a real client would
                if r.status_code == 200:
                    answered.extend(p["prediction_id"] for p in r.json()["predictions"])

        await asyncio.gather(*(worker() for _ in range(16)))


# The load runs until the service goes away; this only bounds it should the service not.
LOAD_BOUND_S = 60
GOING = 200  # answered predictions that show the load is going: the moment to stop mid-load


async def _under_load(answered: list[str], store_db: str | None = None) -> None:
    """Returns once the load is going: more than GOING predictions answered (and with
    ``store_db``, a flush has written some to it; read from the database itself, since the
    service's look-up would flush its buffer)."""

    async def going() -> bool:
        if len(answered) <= GOING:
            return False
        return store_db is None or bool(await asyncio.to_thread(stored, store_db))

    await wait_until_async(
        going, lambda: f"the load did not get going ({len(answered)} answered)", 30, 0.05
    )


def test_graceful_stop_under_load_loses_no_answered_prediction(
    store_db: str, model_dir: Path, tmp_path: Path
) -> None:
    log_path = tmp_path / "model.log"
    with model_process(model_env(store_db, model_dir), log_path) as (url, proc):
        answered: list[str] = []

        async def load_then_stop() -> None:
            load = asyncio.create_task(_hammer(url, answered, time.monotonic() + LOAD_BOUND_S))
            await _under_load(answered)
            proc.send_signal(signal.SIGTERM)  # mid-load
            await load

        asyncio.run(load_then_stop())
        # uvicorn finishes in-flight requests and the lifespan, then re-raises the signal.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete." in log_path.read_text()
    assert len(answered) > GOING, "the load did not get going"
    missing = set(answered) - {r.prediction_id for r in stored(store_db)}
    assert not missing, f"{len(missing)} of {len(answered)} answered predictions not stored"


def test_sigkill_loses_only_the_unwritten_tail(
    store_db: str, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL under load: what is lost is only what was still in the buffer, the newest
    predictions (the buffer is written in order, every flush interval); the count is
    reported. Ids are UUIDv7, so an id's time tells when it was made. The interval is 1 s
    here (default 0.1 s) so that a loaded machine's slow answers still leave a tail."""
    interval = 1.0
    env = model_env(store_db, model_dir, MODELOBS_PREDICTION_LOG_FLUSH_INTERVAL_S=str(interval))
    answered: list[str] = []
    with model_process(env, tmp_path / "model.log") as (url, proc):

        async def load_then_kill() -> float:
            load = asyncio.create_task(_hammer(url, answered, time.monotonic() + LOAD_BOUND_S))
            await _under_load(answered, store_db)
            proc.send_signal(signal.SIGKILL)
            killed_at = time.time()
            await load
            return killed_at

        killed_at = asyncio.run(load_then_kill())
        assert proc.wait(timeout=30) == -signal.SIGKILL
    assert len(answered) > GOING, "the load did not get going"
    rows = stored(store_db)
    kept = {r.prediction_id for r in rows}
    lost = [pid for pid in answered if pid not in kept]
    newest_kept = max(id_time(r.prediction_id) or 0.0 for r in rows)
    oldest_lost = min((id_time(pid) or 0.0 for pid in lost), default=killed_at)
    # A prefix was written: nothing lost is older than something kept (ids have ms times).
    assert oldest_lost >= newest_kept - 0.001
    with capsys.disabled():
        print(
            f"\n[{'postgresql' if '://' in store_db else 'sqlite'}] SIGKILL lost {len(lost)} of {len(answered)} answered "
            f"predictions, made in the last {killed_at - oldest_lost:.3f} s before the kill "
            f"(flush interval {interval} s)"
        )
