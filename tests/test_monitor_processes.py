"""Two real `modelobs serve model` replicas (MODELOBS_MONITOR=off) and one real
`modelobs serve monitor`, on one PostgreSQL store: the monitor's window counts every
prediction of both replicas, a shift sent to one replica only is detected, and the quality
gauges the monitor serves (pull mode, /metrics) equal scikit-learn over the store's rows.
Only the monitor exports drift and quality."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from deploy.native.postgres import PostgresServer
from deploy.native.readiness import wait_ready
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from modelobs.loadgen.scenarios import Scenario, SuddenShift
from modelobs.model.store import ModelBundle
from modelobs.monitoring.store import open_store

from .conftest import make_settings
from .postgres import fresh_database
from .processes import MODELOBS
from .servers import free_port
from .test_monitor import _offline_quality
from .waiting import wait_until

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


@contextmanager
def _serve(apps: list[str], env: dict[str, str], workdir: Path) -> Iterator[list[str]]:
    """The apps as processes, started together (they import for seconds each), ready."""
    started = []
    try:
        for app in apps:
            port = free_port()
            log = workdir / f"{app}-{port}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [MODELOBS, "serve", app, "--port", str(port)],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            started.append((f"http://127.0.0.1:{port}", proc, log, app))
        for url, proc, log, app in started:
            wait_ready(f"{url}/readyz", proc, log, timeout_s=90, name=app)
        yield [url for url, *_ in started]
    finally:
        for _, proc, _, _ in started:
            proc.terminate()
        for _, proc, _, _ in started:
            proc.wait(timeout=30)


def _scrape(url: str) -> dict[str, list]:
    answer = httpx.get(f"{url}/metrics", headers={"Accept": OPENMETRICS})
    assert answer.status_code == 200
    return {f.name: f.samples for f in text_string_to_metric_families(answer.text)}


def test_replicas_and_one_monitor_as_processes(
    bundle: ModelBundle, model_dir: Path, tmp_path: Path, postgres_server: PostgresServer
) -> None:
    database = fresh_database(postgres_server)
    env = {
        **os.environ,
        "MODELOBS_MODEL_DIR": str(model_dir),
        "MODELOBS_PREDICTION_DB": database,
        "MODELOBS_MONITOR": "off",
        "MODELOBS_DRIFT_WINDOW": "400",
        "MODELOBS_DRIFT_MIN_WINDOW": "200",
        "MODELOBS_DRIFT_INTERVAL_S": "0.5",
        "MODELOBS_QUALITY_WINDOW": "100",
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    steady, shifted = Scenario(), SuddenShift(features=("monthly_charges",), shift_sd=1.5, at_s=0)
    with _serve(["model", "model", "monitor"], env, tmp_path) as (*replicas, monitor):
        made: list[tuple[str, str]] = []
        for batch in range(8):  # 8 x 40 predictions, alternating replicas
            replica = replicas[batch % 2]
            scenario = shifted if replica == replicas[1] else steady
            records = [scenario.record(batch * 40 + i, 0) for i in range(40)]
            answer = httpx.post(f"{replica}/predict", json={"records": records})
            assert answer.status_code == 200
            made += [(p["prediction_id"], p["prediction"]) for p in answer.json()["predictions"]]
        classes = bundle.schema.classes
        for i, (pid, predicted) in enumerate(made[:120]):  # labelled at the other replica
            label = predicted if i % 4 else next(c for c in classes if c != predicted)
            feedback = {"prediction_id": pid, "label": label}
            replica = replicas[(i // 40 + 1) % 2]
            assert httpx.post(f"{replica}/feedback", json=feedback).status_code == 200

        seen: list[tuple] = []

        def caught_up() -> tuple[dict, dict] | None:
            report = httpx.get(f"{monitor}/drift").json()
            quality = httpx.get(f"{monitor}/quality").json()
            seen[:] = [(report["window"]["size"], report["verdict_ready"], quality["window_size"])]
            return (report, quality) if seen[0] == (320, True, 100) else None

        report, quality = wait_until(caught_up, lambda: str(seen[0]), timeout_s=30, poll_s=0.1)
        assert report["drifted_features"] == ["monthly_charges"]
        assert httpx.get(f"{replicas[0]}/drift").status_code == 404

        metrics = _scrape(monitor)
        replica_metrics = [_scrape(url) for url in replicas]

    store = open_store(make_settings(model_dir, tmp_path, prediction_db=database))
    store.start()
    try:
        expected = _offline_quality(store.recent_labelled(100), classes)
    finally:
        store.stop()
    (accuracy,) = metrics["modelobs_model_accuracy"]
    assert accuracy.value == pytest.approx(expected["accuracy"])
    assert quality["accuracy"] == pytest.approx(expected["accuracy"])
    f1 = {s.labels["class"]: s.value for s in metrics["modelobs_model_f1"]}
    assert f1 == pytest.approx({c: v for c, v in expected["f1"].items() if v == v})
    assert accuracy.labels["service_name"] == "model-monitor"
    detected = {s.labels["feature_name"]: s.value for s in metrics["modelobs_drift_detected"]}
    assert detected["monthly_charges"] == 1
    for found in replica_metrics:  # exported once: by the monitor only
        assert "modelobs_predictions" in found
        assert not [n for n in found if n.startswith(("modelobs_drift", "modelobs_model_"))]
