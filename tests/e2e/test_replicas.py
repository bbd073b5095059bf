"""The native stack's REPLICAS=2 option, end to end (deploy/native/replicas.py): PostgreSQL,
two model-service replicas behind the gateway, one monitor, the real collector.

* Predictions spread over both replicas reach the monitor: ``/drift``'s window counts every
  one of them, and a feature shifted in what one replica alone receives is detected.
* The quality gauges the monitor exports (read from the collector's output) equal accuracy,
  precision, recall and F1 computed offline, with scikit-learn, from the store's rows.
* One replica stopped under load (SIGTERM): every prediction acknowledged to a client is in
  the store. Started again, then SIGKILLed under load: what is lost was acknowledged within
  the store's flush interval (plus one write) before the kill; the test prints the figures.
  Clients see no failure in either case: the gateway moves to the other replica.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import pytest
from deploy.native import components as native
from deploy.native import replicas as replicated
from deploy.native.supervisor import Running, Supervisor, SupervisorError
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from modelobs.model.data import CLASSES, generate
from modelobs.monitoring.store import id_time

from ..waiting import poll_until
from .collector_output import Samples, by_instance, job_samples

pytestmark = pytest.mark.e2e

FLUSH_INTERVAL_S = 0.1  # MODELOBS_PREDICTION_LOG_FLUSH_INTERVAL_S, the documented default
ONE_WRITE_S = 2.0  # one batch insert and commit, on a shared 2-core machine under heavy load
SHIFTED = "monthly_charges"
MONITOR_JOB = "modelobs/model-monitor"


@dataclass
class ReplicaStack:
    cfg: native.StackConfig
    bins: dict[str, str]
    ports: replicated.ReplicaPorts
    records: dict[str, Running]
    restarted: list[Supervisor] = field(default_factory=list)

    @property
    def gateway_url(self) -> str:
        return self.cfg.url(self.cfg.ports.gateway)

    @property
    def monitor_url(self) -> str:
        return self.cfg.url(self.ports.monitor)

    def replica_url(self, index: int) -> str:
        return self.cfg.url(self.ports.models[index])

    @property
    def collector_metrics(self) -> str:
        return self.cfg.url(self.cfg.ports.collector_prometheus, "/metrics")


@pytest.fixture(scope="module")
def stack(
    bins: dict[str, str], model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReplicaStack]:
    run_dir = tmp_path_factory.mktemp("replicas-run")
    ports, _ = native.Ports.free()
    telemetry = {
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "MODELOBS_MODEL_DIR": str(model_dir),
    }
    cfg = native.StackConfig(
        run_dir=run_dir,
        ports=ports,
        load_max_seconds=0,
        replicas=2,
        extra_env={
            "model-service": telemetry,
            "gateway": {**telemetry, "MODELOBS_UPSTREAM_TIMEOUT_S": "10"},
            "model-monitor": {
                **telemetry,
                "MODELOBS_DRIFT_WINDOW": "5000",
                "MODELOBS_DRIFT_MIN_WINDOW": "200",
                "MODELOBS_DRIFT_RECOMPUTE_EVERY": "50",
                "MODELOBS_DRIFT_INTERVAL_S": "0.5",
            },
        },
    )
    wanted = {"otelcol", "model-service", "gateway"}
    base = [p for p in native.default_stack(cfg, bins) if p.name in wanted]
    replica_ports = replicated.replica_ports(cfg, cfg.replicas)
    supervisor = Supervisor(run_dir)
    try:
        records = supervisor.start(
            replicated.with_replicas(base, cfg, bins, replica_ports), say=lambda _m: None
        )
    except (SupervisorError, LookupError) as exc:
        pytest.fail(f"the replicas stack did not start: {exc}", pytrace=False)
    stack = ReplicaStack(cfg, bins, replica_ports, {r.name: r for r in records})
    try:
        yield stack
    finally:
        for restarted in stack.restarted:
            restarted.stop(say=lambda _m: None)
        supervisor.stop(say=lambda _m: None)


# --------------------------------------------------------------------------- helpers


def until(condition: Callable[[], Any], timeout_s: float = 60, every_s: float = 0.3) -> Any:
    """``condition()``'s first truthy value, or its last value at the deadline."""
    return poll_until(condition, timeout_s, every_s)


def sql(stack: ReplicaStack, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(stack.ports.database_url) as conn:
        return conn.execute(query, params).fetchall()


def stored_ids(stack: ReplicaStack) -> set[str]:
    return {row[0] for row in sql(stack, "SELECT prediction_id FROM predictions")}


def exported(stack: ReplicaStack, job: str) -> Samples:
    return job_samples(stack.collector_metrics, job)


def predict_all(url: str, records: list[dict[str, Any]]) -> list[httpx.Response]:
    def one(record: dict[str, Any]) -> httpx.Response:
        return httpx.post(url, json={"record": record}, timeout=30)

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, records))


def drift_window(stack: ReplicaStack) -> dict[str, Any]:
    return httpx.get(f"{stack.monitor_url}/drift", timeout=10).json()


# --------------------------------------------------------------------------- the monitor


def test_the_monitor_counts_both_replicas_and_detects_a_shift_sent_to_one(
    stack: ReplicaStack,
) -> None:
    before = len(stored_ids(stack))
    first = predict_all(f"{stack.gateway_url}/v1/predict", generate(600, seed=21).records())
    assert [r.status_code for r in first] == [200] * 600
    sent = before + 600

    # Both replicas predicted; their counters add up to what was sent.
    def per_replica() -> dict[str, float] | None:
        samples = exported(stack, "modelobs/model-service")
        counts = dict(by_instance(samples)["modelobs_predictions_total"])
        return counts if sum(counts.values()) >= sent else None

    counts = until(per_replica)
    assert counts and len(counts) == 2 and all(counts.values()), counts
    assert sum(counts.values()) == sent

    assert until(lambda: drift_window(stack)["window"]["size"] == sent)
    report = drift_window(stack)
    assert len(stored_ids(stack)) == sent  # the window is the store: every row, once
    assert SHIFTED not in report["drifted_features"], report["drifted_features"]

    # Shifted by 2 standard deviations, sent to the second replica only.
    shifted = generate(600, seed=22, shift={SHIFTED: 2.0}).records()
    second = predict_all(f"{stack.replica_url(1)}/predict", shifted)
    assert [r.status_code for r in second] == [200] * 600
    sent += 600
    assert until(lambda: drift_window(stack)["window"]["size"] == sent)

    def detected() -> dict[str, Any] | None:
        report = drift_window(stack)
        return report if SHIFTED in report["drifted_features"] else None

    report = until(detected)
    assert report, drift_window(stack)["drifted_features"]
    feature = next(f for f in report["features"] if f["name"] == SHIFTED)
    print(
        f"\n{SHIFTED} shifted on one replica: window {report['window']['size']}, "
        f"KS {feature['statistic']:.3f}, adjusted p {feature['p_value_adjusted']:.2e}"
    )


def test_quality_gauges_equal_an_offline_computation_from_the_store(
    stack: ReplicaStack,
) -> None:
    data = generate(300, seed=31)
    answers = predict_all(f"{stack.gateway_url}/v1/predict", data.records())
    assert all(a.status_code == 200 for a in answers)
    labels = [CLASSES[int(i)] for i in data.labels]
    ids = [a.json()["predictions"][0]["prediction_id"] for a in answers]

    def feedback(pair: tuple[str, str]) -> int:
        body = {"prediction_id": pair[0], "label": pair[1]}
        return httpx.post(f"{stack.gateway_url}/v1/feedback", json=body, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(feedback, zip(ids, labels, strict=True))) == {200}

    # Offline, from the store's rows (every label so far sits in the quality window).
    rows = sql(
        stack,
        "SELECT p.prediction, l.true_label FROM labels l "
        "JOIN predictions p ON p.prediction_id = l.prediction_id",
    )
    predicted, true = [r[0] for r in rows], [r[1] for r in rows]
    assert len(rows) == 300
    precision, recall, f1, _ = precision_recall_fscore_support(
        true, predicted, labels=list(CLASSES), zero_division=0
    )

    def gauges() -> dict[str, list[tuple[dict[str, str], float]]] | None:
        found = exported(stack, MONITOR_JOB)
        size = found.get("modelobs_model_labelled_window_size", [])
        return found if size and size[0][1] == len(rows) else None

    found = until(gauges)
    assert found, exported(stack, MONITOR_JOB).get("modelobs_model_labelled_window_size")
    [(_, accuracy)] = found["modelobs_model_accuracy"]
    assert accuracy == pytest.approx(accuracy_score(true, predicted), abs=1e-9)
    for name, offline in (("precision", precision), ("recall", recall), ("f1", f1)):
        by_class = {labels_["class"]: v for labels_, v in found[f"modelobs_model_{name}"]}
        expected = dict(zip(CLASSES, (float(x) for x in offline), strict=True))
        for cls, value in by_class.items():
            assert value == pytest.approx(expected[cls], abs=1e-9), (name, cls)
        assert by_class, name


# --------------------------------------------------------------------------- a replica lost


@dataclass
class Load:
    """Predictions through the gateway from 4 threads until stopped: what was acknowledged,
    and when."""

    url: str
    acknowledged: list[tuple[str, float]] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> Iterator[None]:
        records = generate(500, seed=41).records()

        def send(worker: int) -> None:
            with httpx.Client(timeout=30) as client:
                i = worker
                while not self.stop.is_set():
                    r = client.post(self.url, json={"record": records[i % len(records)]})
                    i += 4
                    if r.status_code == 200:
                        pid = r.json()["predictions"][0]["prediction_id"]
                        self.acknowledged.append((pid, time.time()))
                    else:
                        self.failed.append(r.status_code)

        threads = [threading.Thread(target=send, args=(w,), daemon=True) for w in range(4)]
        for t in threads:
            t.start()
        try:
            yield
        finally:
            self.stop.set()
            for t in threads:
                t.join(60)

    def wait_for(self, more: int) -> None:
        target = len(self.acknowledged) + more
        assert until(lambda: len(self.acknowledged) >= target, every_s=0.05), "load stalled"


def predicted_by(record: Running) -> set[str]:
    """The prediction ids a replica logged (one ``prediction`` event per prediction, written
    to its log as it answers)."""
    made = set()
    for line in Path(record.log).read_text(errors="replace").splitlines():
        if '"event":"prediction"' not in line.replace(" ", ""):
            continue
        try:
            made.add(json.loads(line)["prediction.id"])
        except (ValueError, KeyError):
            continue  # a line cut short by the kill
    return made


def stop_process(pid: int, sig: signal.Signals) -> None:
    proc = psutil.Process(pid)
    os.kill(pid, sig)
    proc.wait(60)


def not_stored_beyond_the_kill(stack: ReplicaStack, load: Load, killed_at: float) -> bool:
    """True once every acknowledged prediction made after the kill (the live replica's) is
    in the store."""
    stored = stored_ids(stack)
    return all(pid in stored for pid, at in load.acknowledged if (id_time(pid) or 0) > killed_at)


def test_a_replica_stopped_or_killed_under_load(stack: ReplicaStack) -> None:
    load = Load(f"{stack.gateway_url}/v1/predict")
    runner = load.run()
    next(runner)
    try:
        load.wait_for(100)
        # Graceful stop: uvicorn finishes what it answered, the store writes it all.
        stop_process(stack.records["model-service-2"].pid, signal.SIGTERM)
        load.wait_for(100)
        graceful = list(load.acknowledged)
        restarted = Supervisor(stack.cfg.run_dir / "restarted")
        stack.restarted.append(restarted)
        [again] = restarted.start(
            [replicated.replica_process(stack.cfg, stack.bins, 1, stack.ports)],
            say=lambda _m: None,
        )
        # Under load again (the gateway tries it once its skip after the refusals ends).
        assert until(lambda: len(predicted_by(again)) >= 100), "the restarted replica idles"
        # SIGKILL: what its buffer held is gone.
        killed_at = time.time()
        stop_process(again.pid, signal.SIGKILL)
        load.wait_for(100)
    finally:
        next(runner, None)
    # Every acknowledged prediction of the live replica is flushed within its interval.
    assert until(lambda: not_stored_beyond_the_kill(stack, load, killed_at))
    stored = stored_ids(stack)  # the live replica's graceful path: written within the interval
    assert load.failed == []  # the gateway moved every request to the live replica
    assert not [pid for pid, _ in graceful if pid not in stored]  # graceful: nothing lost
    lost = [pid for pid, _ in load.acknowledged if pid not in stored]
    killed_made = predicted_by(again)
    assert set(lost) <= killed_made  # only the killed replica lost anything
    lost_ages = sorted(killed_at - (id_time(pid) or 0.0) for pid in lost)
    window = FLUSH_INTERVAL_S + ONE_WRITE_S
    print(
        f"\nSIGKILL of one replica under load: {len(load.acknowledged)} acknowledged in all, "
        f"{len(killed_made)} made by the killed replica since its restart, {len(lost)} of "
        f"them lost; the oldest lost was made {max(lost_ages, default=0):.3f}s before the "
        f"kill (bound: flush interval {FLUSH_INTERVAL_S}s + one write {ONE_WRITE_S}s)"
    )
    assert all(age <= window for age in lost_ages), lost_ages
