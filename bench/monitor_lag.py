"""Benchmark: how far the monitor lags behind the prediction store at 2,000 predictions/s.

A writer process stands for the model services: it submits predictions to the store at a
constant rate (the store's own bounded buffer and writer thread, as in a replica) and labels
10 % of them half a second later through ``label()`` (what ``POST /feedback`` calls). This
process runs the real :class:`ModelMonitor` with its poll thread and its drift thread, at the
service defaults. The feed it reads is wrapped only to note, for every row handed over, how
old it was then:

* **prediction lag**: ingestion time minus the prediction's ``created_at`` (when it was
  answered); it includes the store's flush interval (0.1 s) and the monitor's poll interval
  (``MODELOBS_MONITOR_POLL_INTERVAL_S``, 0.2 s).
* **label lag**: ingestion time minus ``labelled_at``.
* whether the lag grows (p99 of the first third against the last third of the run), the
  monitor's CPU (this process's CPU time per row ingested, drift recomputation included),
  and that every row written was ingested exactly once.
* **replay**: a fresh monitor reading the whole store from the start (a restart), rows/s.

    .venv/bin/python bench/monitor_lag.py                  # SQLite, 30 s, writes results
    .venv/bin/python bench/monitor_lag.py --quick          # 8 s, prints only
    .venv/bin/python bench/monitor_lag.py --postgres       # and a throwaway PostgreSQL
    .venv/bin/python bench/monitor_lag.py --postgres-url postgresql://...  # or this one
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results_file import write_results
from opentelemetry.metrics import NoOpMeter

from modelobs.loadgen.scenarios import Scenario
from modelobs.model.train import train_and_save
from modelobs.monitoring.model_monitor import ModelMonitor
from modelobs.monitoring.store import (
    PredictionRow,
    PredictionStore,
    new_prediction_id,
    open_store,
)
from modelobs.settings import Settings

LABEL_SHARE = 10  # one prediction in 10 gets a label
LABEL_AFTER_S = 0.5


def _write(
    location: str,
    rate: float,
    duration_s: float,
    version: str,
    pool: list[tuple[dict, str, float]],
    out: Any,
) -> None:
    """The writer process: predictions at ``rate`` per second, labels for one in ten."""
    store = open_store(Settings(prediction_db=location), NoOpMeter("bench-writer"))
    store.start()
    to_label: list[tuple[float, str, str]] = []
    labels = 0

    def label_loop() -> None:
        nonlocal labels
        while True:
            if not to_label:
                if done.is_set():
                    return
                time.sleep(0.01)
                continue
            due, pid, label = to_label[0]
            if due > time.time():
                time.sleep(min(due - time.time(), 0.01))
                continue
            to_label.pop(0)
            store.label(pid, label)
            labels += 1

    done = threading.Event()
    labeller = threading.Thread(target=label_loop, daemon=True)
    labeller.start()
    start = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - start) < duration_s:
        due = int(elapsed * rate) - sent
        if due > 0:
            now = time.time()
            rows = []
            for i in range(due):
                record, prediction, score = pool[(sent + i) % len(pool)]
                rows.append(
                    PredictionRow(new_prediction_id(), now, version, record, prediction, score)
                )
                if (sent + i) % LABEL_SHARE == 0:
                    to_label.append((now + LABEL_AFTER_S, rows[-1].prediction_id, prediction))
            store.submit(rows)
            sent += due
        time.sleep(0.005)
    seconds = time.monotonic() - start
    done.set()
    labeller.join()
    store.stop()
    out.send({"predictions": sent, "labels": labels, "seconds": seconds})


class TimedFeed:
    """The store's feeds, noting how old each row is when the monitor receives it."""

    def __init__(self, store: PredictionStore) -> None:
        self.store = store
        self.prediction_lags: list[tuple[float, float]] = []  # (received at, lag)
        self.label_lags: list[tuple[float, float]] = []
        self.prediction_ids: set[str] = set()
        self.duplicates = 0

    def predictions_after(self, cursor: int, limit: int) -> tuple[list[PredictionRow], int]:
        rows, cursor = self.store.predictions_after(cursor, limit)
        now = time.time()
        for r in rows:
            self.prediction_lags.append((now, now - r.created_at))
            if r.prediction_id in self.prediction_ids:
                self.duplicates += 1
            self.prediction_ids.add(r.prediction_id)
        return rows, cursor

    def feed_heads(self) -> tuple[int, int]:
        return self.store.feed_heads()

    def labels_after(self, cursor: int, limit: int) -> tuple[list[PredictionRow], int]:
        rows, cursor = self.store.labels_after(cursor, limit)
        now = time.time()
        self.label_lags.extend((now, now - (r.labelled_at or now)) for r in rows)
        return rows, cursor


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def q(p: float) -> float:
        return round(ordered[min(int(p * len(ordered)), len(ordered) - 1)] * 1000, 1)

    return {"p50_ms": q(0.5), "p95_ms": q(0.95), "p99_ms": q(0.99), "max_ms": q(1.0)}


def _thirds_p99(lags: list[tuple[float, float]]) -> tuple[float, float]:
    third = len(lags) // 3
    first = [lag for _, lag in lags[:third]]
    last = [lag for _, lag in lags[-third:]]
    return _quantiles(first)["p99_ms"], _quantiles(last)["p99_ms"]


def run_one(
    name: str, location: str, model_dir: Path, rate: float, duration_s: float
) -> dict[str, Any]:
    from modelobs.model.store import load

    bundle = load(model_dir)
    records = [Scenario().record(i, 0) for i in range(2000)]
    probabilities = bundle.predict_proba(records)
    classes = bundle.schema.classes
    pool = [
        (r, classes[int(p.argmax())], float(p.max()))
        for r, p in zip(records, probabilities, strict=True)
    ]
    settings = Settings(prediction_db=location, model_dir=model_dir)
    feed_store = open_store(settings, NoOpMeter("bench-monitor"))
    feed_store.start()
    feed = TimedFeed(feed_store)
    monitor = ModelMonitor(bundle, settings, NoOpMeter("bench-monitor"), feed)
    monitor.start()
    assert monitor.wait_ready(30), "the monitor never caught up with an empty store"

    receive, send = multiprocessing.get_context("spawn").Pipe(duplex=False)
    writer = multiprocessing.get_context("spawn").Process(
        target=_write, args=(location, rate, duration_s, bundle.schema.version, pool, send)
    )
    cpu0 = time.process_time()
    writer.start()
    written = receive.recv()
    writer.join()
    deadline = time.monotonic() + 30
    while (
        len(feed.prediction_lags) < written["predictions"]
        or len(feed.label_lags) < written["labels"]
    ):
        assert time.monotonic() < deadline, "the monitor never read every row"
        time.sleep(0.05)
    cpu = time.process_time() - cpu0
    monitor.stop()
    window = monitor.drift.compute().window.size

    replay_feed = open_store(settings, NoOpMeter("bench-replay"))
    replay_feed.start()
    # The rate of reading the store from its start (what a start costs per row it reads; a
    # start reads only the windows' worth of newest rows).
    fresh = ModelMonitor(bundle, settings, NoOpMeter("bench-replay"), replay_feed, from_tail=False)
    t0 = time.perf_counter()
    while fresh.rows_read < written["predictions"]:
        fresh.catch_up()
    replay_s = time.perf_counter() - t0
    replay_feed.stop()
    feed_store.stop()

    prediction_lags = [lag for _, lag in feed.prediction_lags]
    first_p99, last_p99 = _thirds_p99(feed.prediction_lags)
    ingested = len(feed.prediction_ids)
    return {
        "store": name,
        "target_rate_per_s": rate,
        "achieved_rate_per_s": round(written["predictions"] / written["seconds"], 1),
        "predictions_written": written["predictions"],
        "predictions_ingested": ingested,
        "duplicates": feed.duplicates,
        "labels_written": written["labels"],
        "labels_ingested": len(feed.label_lags),
        "drift_window_size": window,
        "prediction_lag": _quantiles(prediction_lags),
        "label_lag": _quantiles([lag for _, lag in feed.label_lags]),
        "prediction_lag_p99_first_third_ms": first_p99,
        "prediction_lag_p99_last_third_ms": last_p99,
        "monitor_cpu_share_of_one_core": round(cpu / written["seconds"], 3),
        "monitor_cpu_us_per_prediction": round(cpu / ingested * 1e6, 1),
        "replay_rows_per_s": round(written["predictions"] / replay_s),
    }


def _print(result: dict[str, Any]) -> None:
    lag, labels = result["prediction_lag"], result["label_lag"]
    print(
        f"{result['store']:>10}: {result['achieved_rate_per_s']:.0f}/s written, "
        f"{result['predictions_ingested']}/{result['predictions_written']} ingested "
        f"({result['duplicates']} twice), window {result['drift_window_size']}; "
        f"prediction lag p50 {lag['p50_ms']} ms p99 {lag['p99_ms']} ms max {lag['max_ms']} ms "
        f"(p99 first third {result['prediction_lag_p99_first_third_ms']} ms, last "
        f"{result['prediction_lag_p99_last_third_ms']} ms); label lag p50 {labels['p50_ms']} ms "
        f"p99 {labels['p99_ms']} ms; monitor CPU {result['monitor_cpu_share_of_one_core']:.1%} "
        f"of a core ({result['monitor_cpu_us_per_prediction']} µs/prediction); "
        f"replay {result['replay_rows_per_s']} rows/s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000.0, help="predictions per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of writing")
    parser.add_argument("--quick", action="store_true", help="8 s, results not written")
    parser.add_argument("--postgres-url", help="also run against this PostgreSQL database")
    parser.add_argument(
        "--postgres", action="store_true", help="also run against a throwaway PostgreSQL server"
    )
    args = parser.parse_args()
    duration = 8.0 if args.quick else args.duration
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        train_and_save(model_dir)
        runs = [("sqlite", str(Path(tmp) / "predictions.db"))]
        server = None
        if args.postgres:
            from deploy.native.net import free_port
            from deploy.native.postgres import PostgresServer

            server = PostgresServer(free_port()).start()
            runs.append(("postgresql", server.create_database("monitor_lag")))
        elif args.postgres_url:
            runs.append(("postgresql", args.postgres_url))
        results = []
        try:
            for name, location in runs:
                result = run_one(name, location, model_dir, args.rate, duration)
                _print(result)
                results.append(result)
        finally:
            if server is not None:
                server.stop()
    if not args.quick:
        out = write_results(
            "monitor_lag",
            {
                "duration_s": duration,
                "settings": {
                    "flush_interval_s": 0.1,
                    "monitor_poll_interval_s": Settings().monitor_poll_interval_s,
                    "monitor_batch_size": Settings().monitor_batch_size,
                    "drift_recompute_every": Settings().drift_recompute_every,
                    "label_share": 1 / LABEL_SHARE,
                },
                "runs": results,
            },
        )
        print(f"wrote {out}")
    failed = [
        r["store"]
        for r in results
        if r["predictions_ingested"] != r["predictions_written"] or r["duplicates"]
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
