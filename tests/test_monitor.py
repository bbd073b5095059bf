"""The monitor: drift and quality once over every replica's predictions, read from the shared
store. Two stores writing to one database stand for two replicas; the monitor reads a third
connection, as `modelobs serve monitor` does."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pytest
import uvicorn
from deploy.native.postgres import PostgresServer
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from modelobs import cli
from modelobs.apps import model_service, monitor
from modelobs.loadgen.scenarios import Scenario, SuddenShift
from modelobs.model.store import ModelBundle
from modelobs.monitoring.model_monitor import ModelMonitor
from modelobs.monitoring.store import PredictionRow, PredictionStore, open_store
from modelobs.settings import Settings
from modelobs.telemetry import configure_logging, current_telemetry

from .conftest import VALID_RECORD, make_settings
from .postgres import fresh_database
from .servers import captured, free_port, serve
from .waiting import wait_until

SHIFTED = SuddenShift(features=("monthly_charges",), shift_sd=1.5, at_s=0)


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
    wait_until(condition, f"timed out waiting for {what}", timeout_s, poll_s=0.05)


def _points(reader: InMemoryMetricReader) -> dict[str, list]:
    data = reader.get_metrics_data()
    return {
        metric.name: list(metric.data.data_points)
        for rm in (data.resource_metrics if data else [])
        for scope in rm.scope_metrics
        for metric in scope.metrics
    }


def _offline_quality(rows: list[PredictionRow], classes: tuple[str, ...]) -> dict:
    """What the quality gauges must say, computed by scikit-learn from the store's rows."""
    predicted = [r.prediction for r in rows]
    true = [r.true_label for r in rows]
    precision, recall, f1, _ = precision_recall_fscore_support(
        true, predicted, labels=list(classes), zero_division=np.nan
    )
    return {
        "accuracy": accuracy_score(true, predicted),
        "precision": dict(zip(classes, precision, strict=True)),
        "recall": dict(zip(classes, recall, strict=True)),
        "f1": dict(zip(classes, f1, strict=True)),
    }


def _rows(bundle: ModelBundle, scenario: Scenario, first: int, n: int) -> list[PredictionRow]:
    records = [scenario.record(first + i, 0.0) for i in range(n)]
    probabilities = bundle.predict_proba(records)
    classes = bundle.schema.classes
    now = time.time()
    return [
        PredictionRow(
            f"p-{first + i:06d}",
            now,
            bundle.schema.version,
            record,
            classes[int(np.argmax(p))],
            float(np.max(p)),
        )
        for i, (record, p) in enumerate(zip(records, probabilities, strict=True))
    ]


@pytest.fixture
def settings(model_dir: Path, tmp_path: Path, store_db: str) -> Settings:
    """Each test against SQLite and PostgreSQL."""
    return make_settings(
        model_dir,
        tmp_path,
        prediction_db=store_db,
        drift_window=1000,
        drift_min_window=200,
        quality_window=150,
        monitor_batch_size=128,  # several reads per catch-up
    )


@pytest.fixture
def replicas(settings: Settings) -> Iterator[list[PredictionStore]]:
    """Two replicas' stores, writing to the one database."""
    stores = [open_store(settings) for _ in range(2)]
    for store in stores:
        store.start()
    yield stores
    for store in stores:
        store.stop()


@contextmanager
def _monitor(
    bundle: ModelBundle, settings: Settings
) -> Iterator[tuple[ModelMonitor, PredictionStore, InMemoryMetricReader]]:
    """A monitor on its own connection to the store (no poll thread: tests call catch_up)."""
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    feed = open_store(settings)
    feed.start()
    monitor = ModelMonitor(bundle, settings, meter, feed)
    try:
        yield monitor, feed, reader
    finally:
        monitor.stop()
        feed.stop()


def _write(settings: Settings, rows: list[PredictionRow]) -> None:
    """What one replica's store writes, then stops (its connections closed)."""
    store = open_store(settings)
    store.start()
    store.submit(rows)
    store.stop()


def _catch_up(monitor: ModelMonitor, predictions: int, labels: int) -> None:
    def done() -> bool:
        monitor.catch_up()
        return monitor.rows_read >= predictions and monitor.labels_read >= labels

    _wait(done, f"{predictions} predictions and {labels} labels")
    assert (monitor.rows_read, monitor.labels_read) == (predictions, labels)


def test_one_monitor_over_two_replicas(
    bundle: ModelBundle, settings: Settings, replicas: list[PredictionStore]
) -> None:
    with _monitor(bundle, settings) as (monitor, feed, reader):  # there before the traffic
        steady, shifted = replicas
        steady.submit(_rows(bundle, Scenario(), 0, 300))
        shifted.submit(_rows(bundle, SHIFTED, 300, 300))  # the shift reaches one replica only
        for store in replicas:
            assert store.flush()
        # Labels sent to the replica that did not make the prediction; 30 % of them wrong.
        classes = bundle.schema.classes
        made = {r.prediction_id: r for r in steady.between(0, time.time() + 1, 10_000)}
        assert len(made) == 600
        for i, (pid, row) in enumerate(sorted(made.items())[:200]):
            true = row.prediction if i % 10 < 7 else next(c for c in classes if c != row.prediction)
            other = shifted if i % 2 else steady
            assert other.label(pid, true)[0].value == "accepted"

        _catch_up(monitor, 600, 200)
        report = monitor.drift.compute()
        assert report.window.size == 600  # every prediction of both replicas, once
        assert report.drifted_features == ["monthly_charges"]

        # Quality equals scikit-learn over the last 150 labelled rows of the store.
        labelled = feed.recent_labelled(settings.quality_window)
        assert len(labelled) == 150
        expected = _offline_quality(labelled, classes)
        points = _points(reader)
        (accuracy,) = points["modelobs.model.accuracy"]
        assert accuracy.value == pytest.approx(expected["accuracy"])
        for name in ("precision", "recall", "f1"):
            got = {p.attributes["class"]: p.value for p in points[f"modelobs.model.{name}"]}
            want = {c: v for c, v in expected[name].items() if not np.isnan(v)}
            assert got == pytest.approx(want), name
        summary = monitor.quality_summary()
        assert summary.window_size == 150
        assert summary.accuracy == pytest.approx(expected["accuracy"])
        (delays,) = points["modelobs.label.delay"]
        assert delays.count == 200  # every label counted once

        # Incremental: only the new rows are read, and the window counts each row once.
        steady.submit(_rows(bundle, Scenario(), 600, 50))
        assert steady.flush()
        _catch_up(monitor, 650, 200)
        assert monitor.drift.compute().window.size == 650


def test_a_restarted_monitor_rebuilds_its_windows_without_counting_again(
    bundle: ModelBundle, settings: Settings, replicas: list[PredictionStore]
) -> None:
    store = replicas[0]
    rows = _rows(bundle, Scenario(), 0, 120)
    store.submit(rows)
    assert store.flush()
    for row in rows[:40]:
        store.label(row.prediction_id, row.prediction)
    with _monitor(bundle, settings) as (first, _, _):
        _catch_up(first, 120, 40)
        before = first.quality_summary()

    with _monitor(bundle, settings) as (again, _, reader):
        _catch_up(again, 120, 40)
        assert again.quality_summary() == before
        assert again.drift.compute().window.size == 120
        points = _points(reader)
        assert "modelobs.label.delay" not in points  # old labels are not new labels
        store.label(rows[50].prediction_id, rows[50].prediction)
        _catch_up(again, 120, 41)
        (delays,) = _points(reader)["modelobs.label.delay"]
        assert delays.count == 1


def test_a_started_monitor_reads_only_the_rows_its_windows_hold(
    bundle: ModelBundle, model_dir: Path, tmp_path: Path, store_db: str
) -> None:
    """A (re)start costs the windows' size, not the store's: with windows of 100 predictions
    and 30 labels over a store of 400 and 200, the poll thread reads the newest 100 and 30."""
    small = make_settings(
        model_dir,
        tmp_path,
        prediction_db=store_db,
        drift_window=100,
        drift_min_window=50,
        quality_window=30,
    )
    rows = _rows(bundle, Scenario(), 0, 400)
    store = open_store(small)
    store.start()
    store.submit(rows)
    assert store.flush()
    for row in rows[:200]:
        store.label(row.prediction_id, row.prediction)
    monitor = ModelMonitor(bundle, small, NoOpMeterProvider().get_meter("test"), store)
    monitor.start()
    try:
        assert monitor.wait_ready(30), "the monitor never read to the end of the store"
        assert (monitor.rows_read, monitor.labels_read) == (100, 30)
        assert monitor.drift.compute().window.size == 100
        assert monitor.quality_summary().window_size == 30
    finally:
        monitor.stop()
        store.stop()


def test_rows_of_another_model_version_stay_out_of_the_windows(
    bundle: ModelBundle, settings: Settings, replicas: list[PredictionStore]
) -> None:
    store = replicas[0]
    ours = _rows(bundle, Scenario(), 0, 30)
    theirs = [
        PredictionRow(**{**r.__dict__, "prediction_id": f"old-{i}", "model_version": "0.9"})
        for i, r in enumerate(_rows(bundle, SHIFTED, 30, 20))
    ]
    store.submit(ours + theirs)
    assert store.flush()
    with _monitor(bundle, settings) as (monitor, _, _):
        _catch_up(monitor, 50, 0)
        assert monitor.rows_skipped == 20
        assert monitor.drift.compute().window.size == 30


def test_serve_monitor_apart_from_the_model_service(
    model_dir: Path, tmp_path: Path, store_db: str
) -> None:
    """MODELOBS_MONITOR=off: the model service only stores; `serve monitor` (its own
    service.name) serves /drift and /quality and exports the gauges, once."""
    settings = make_settings(
        model_dir,
        tmp_path,
        prediction_db=store_db,
        monitor="off",
        drift_window=300,
        drift_min_window=200,
        drift_recompute_every=50,
        drift_interval_s=0.5,
        monitor_poll_interval_s=0.05,
    )
    model_cap, monitor_cap = captured("model-service"), captured("model-monitor")
    records = [SHIFTED.record(i, 0) for i in range(250)]
    with (
        serve(model_service.create_app(settings, model_cap.telemetry)) as model_url,
        serve(monitor.create_app(settings, monitor_cap.telemetry), free_port()) as monitor_url,
    ):
        elsewhere = httpx.get(f"{model_url}/drift")
        assert elsewhere.status_code == 404
        assert elsewhere.json()["error"]["reason"] == "monitor_elsewhere"
        assert "modelobs serve monitor" in elsewhere.json()["error"]["message"]
        assert httpx.get(f"{model_url}/quality").status_code == 404

        _wait(lambda: httpx.get(f"{monitor_url}/readyz").status_code == 200, "monitor ready")
        ids = []
        for chunk in range(0, 250, 50):
            answer = httpx.post(
                f"{model_url}/predict", json={"records": records[chunk : chunk + 50]}
            )
            assert answer.status_code == 200
            ids += [(p["prediction_id"], p["prediction"]) for p in answer.json()["predictions"]]
        for pid, predicted in ids[:20]:
            feedback = {"prediction_id": pid, "label": predicted}
            assert httpx.post(f"{model_url}/feedback", json=feedback).status_code == 200

        def drift_seen() -> bool:
            report = httpx.get(f"{monitor_url}/drift").json()
            return report["window"]["size"] == 250 and report["verdict_ready"]

        _wait(drift_seen, "the monitor's drift verdict over all 250 predictions")
        report = httpx.get(f"{monitor_url}/drift").json()
        assert report["drifted_features"] == ["monthly_charges"]
        quality = httpx.get(f"{monitor_url}/quality").json()
        assert quality["window_size"] == 20 and quality["accuracy"] == 1.0
        model_points, monitor_points = model_cap.metric_points(), monitor_cap.metric_points()
        events = [
            r for r in monitor_cap.log_records() if r.attributes.get("event") == "drift_changed"
        ]
    assert not {n for n in model_points if n.startswith(("modelobs.drift", "modelobs.model."))}
    (detected,) = [
        p
        for p in monitor_points["modelobs.drift.detected"][1]
        if p.attributes["feature.name"] == "monthly_charges"
    ]
    assert detected.value == 1
    assert monitor_points["modelobs.model.labelled_window.size"][1][0].value == 20
    assert monitor_cap.telemetry.resource.attributes["service.name"] == "model-monitor"
    assert events and "monthly_charges" in events[-1].attributes["drifted_features"]
    for cap in (model_cap, monitor_cap):
        cap.telemetry.shutdown()


def test_cli_serves_the_monitor_on_8002_in_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **kw: calls.append((target, kw)))
    assert cli.main(["serve", "monitor"]) == 0
    ((target, options),) = calls
    assert target == "modelobs.apps.monitor:create_app"
    assert options["port"] == 8002 and options["workers"] == 1
    assert cli.main(["serve", "monitor", "--workers", "2"]) == 2
    assert len(calls) == 1  # refused before starting anything


def test_embedded_monitor_serves_quality_from_the_model_service(
    model_dir: Path, tmp_path: Path
) -> None:
    settings = make_settings(model_dir, tmp_path)
    cap = captured("model-service")
    with serve(model_service.create_app(settings, cap.telemetry)) as url:
        answer = httpx.post(f"{url}/predict", json={"records": [VALID_RECORD] * 4})
        predictions = answer.json()["predictions"]
        assert {p["prediction"] for p in predictions} == {"churn"}
        for i, p in enumerate(predictions):  # three right, one wrong
            label = {"prediction_id": p["prediction_id"], "label": "churn" if i else "stay"}
            assert httpx.post(f"{url}/feedback", json=label).status_code == 200
        quality = httpx.get(f"{url}/quality").json()
    cap.telemetry.shutdown()
    assert quality["window_size"] == 4 and quality["accuracy"] == 0.75
    assert quality["classes"]["churn"] == {"precision": 0.75, "recall": 1.0, "f1": 6 / 7}


def test_the_monitor_outlives_a_dropped_store_connection(
    bundle: ModelBundle, model_dir: Path, tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """PostgreSQL drops the monitor's connection: the poll that meets it is logged (once),
    the windows stay, the next poll reconnects and reads on from its cursor."""
    settings = make_settings(
        model_dir,
        tmp_path,
        prediction_db=fresh_database(postgres_server),
        monitor_poll_interval_s=0.05,
    )
    cap = captured("model-monitor")
    configure_logging()
    token = current_telemetry.set(cap.telemetry)  # the poll thread logs as this service
    try:
        with _monitor(bundle, settings) as (monitor, _, _):
            monitor.start()
            _write(settings, _rows(bundle, Scenario(), 0, 40))
            _wait(lambda: monitor.rows_read == 40, "the first rows")
            database = str(settings.prediction_db).rpartition("/")[2]
            with psycopg.connect(postgres_server.url(database), autocommit=True) as admin:
                (killed,) = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchone()
            assert killed >= 1
            _write(settings, _rows(bundle, Scenario(), 40, 25))
            _wait(lambda: monitor.rows_read == 65, "the rows after the dropped connection")
            assert monitor.drift.compute().window.size == 65
    finally:
        current_telemetry.reset(token)
    failures = [r for r in cap.log_records() if r.attributes.get("event") == "monitor_read_failed"]
    assert len(failures) == 1
    cap.telemetry.shutdown()
