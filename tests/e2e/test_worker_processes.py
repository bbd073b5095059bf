"""`modelobs serve model --workers 2` for real: two worker processes behind one port, pushing
over OTLP to the real collector, whose Prometheus exporter output is read.

* The parent process builds no telemetry (no connection to the collector, no series of its
  own); each worker sets up its own after it starts, under its own ``service.instance.id``.
* Exactly two instances report, and the prediction counters summed over them equal the
  predictions made: no series missing, none counted twice.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from deploy.native import components as native
from deploy.native.supervisor import Running, Supervisor, SupervisorError

from modelobs.model.data import EXAMPLE_RECORD
from tests.waiting import poll_until, wait_until

from .collector_output import by_instance, job_samples

pytestmark = pytest.mark.e2e

WORKERS = 2
BATCH = 40


@dataclass
class WorkerStack:
    model_url: str
    collector_metrics_url: str
    otlp_port: int
    model: Running


@pytest.fixture(scope="module")
def worker_stack(
    bins: dict[str, str], model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerStack]:
    run_dir = tmp_path_factory.mktemp("workers-run")
    ports, _ = native.Ports.free()
    cfg = native.StackConfig(run_dir=run_dir, ports=ports, load_max_seconds=0)
    service_env = {
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "MODELOBS_MODEL_DIR": str(model_dir),
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    processes = [
        native.resolve(native.SPECS["otelcol"], cfg, bins),
        native.resolve(
            native.SPECS["model-service"],
            cfg,
            bins,
            params={"workers": str(WORKERS)},
            env=service_env,
        ),
    ]
    supervisor = Supervisor(run_dir)
    try:
        records = supervisor.start(processes, say=lambda _m: None)
    except (SupervisorError, LookupError) as exc:
        pytest.fail(f"the workers stack did not start: {exc}", pytrace=False)
    try:
        yield WorkerStack(
            model_url=cfg.url(ports.model),
            collector_metrics_url=cfg.url(ports.collector_prometheus, "/metrics"),
            otlp_port=ports.otlp_grpc,
            model=next(r for r in records if r.name == "model-service"),
        )
    finally:
        supervisor.stop(say=lambda _m: None)


def workers_of(parent: psutil.Process) -> list[psutil.Process]:
    """uvicorn's worker processes (started with multiprocessing's spawn method)."""
    return [
        child
        for child in parent.children()
        if any("multiprocessing.spawn" in part or "spawn_main" in part for part in child.cmdline())
    ]


def exported(metrics_url: str) -> dict[str, dict[str, float]]:
    """Metric sample name → instance (the service.instance.id) → summed value, for the model
    service (also on ``target_info``)."""
    return by_instance(job_samples(metrics_url, "modelobs/model-service"))


def predict_on_fresh_connections(url: str, count: int) -> int:
    """``count`` predictions, each on its own connection, 8 at a time (so the kernel hands
    the connections to both workers); returns how many were answered 200."""

    def one(_: int) -> int:
        return httpx.post(f"{url}/predict", json={"record": EXAMPLE_RECORD}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        return sum(1 for code in pool.map(one, range(count)) if code == 200)


def otlp_connections(process: psutil.Process, otlp_port: int) -> int:
    return sum(
        1
        for c in process.net_connections(kind="tcp")
        if c.raddr and c.raddr.port == otlp_port and c.status == psutil.CONN_ESTABLISHED
    )


def test_the_parent_exports_nothing_and_each_worker_exports_itself(
    worker_stack: WorkerStack,
) -> None:
    parent = psutil.Process(worker_stack.model.pid)
    children = workers_of(parent)
    assert len(children) == WORKERS, [c.cmdline() for c in parent.children()]
    # The workers' exporters connect once their first export is due (every second here).
    wait_until(
        lambda: all(otlp_connections(c, worker_stack.otlp_port) for c in children),
        lambda: (
            f"OTLP connections per worker: "
            f"{[otlp_connections(c, worker_stack.otlp_port) for c in children]}"
        ),
        timeout_s=30,
        poll_s=0.2,
    )
    assert otlp_connections(parent, worker_stack.otlp_port) == 0


def test_two_workers_report_as_two_instances_and_every_prediction_once(
    worker_stack: WorkerStack,
) -> None:
    sent = 0
    deadline = time.monotonic() + 120
    by_instance: dict[str, float] = {}

    def caught_up() -> bool:
        by_instance.clear()
        by_instance.update(
            exported(worker_stack.collector_metrics_url).get("modelobs_predictions_total", {})
        )
        return sum(by_instance.values()) >= sent

    while time.monotonic() < deadline:
        sent += predict_on_fresh_connections(worker_stack.model_url, BATCH)
        # Wait for the counters to catch up with what was sent (export every second).
        poll_until(caught_up, timeout_s=max(0.0, deadline - time.monotonic()), poll_s=0.5)
        if len(by_instance) == WORKERS and all(by_instance.values()):
            break
    assert sum(by_instance.values()) == sent, (by_instance, sent)
    assert len(by_instance) == WORKERS, by_instance
    series = exported(worker_stack.collector_metrics_url)
    # Exactly the two workers' resources: the parent sends nothing.
    assert set(series["target_info"]) == set(by_instance)
    # Every worker reports the same instruments (nothing missing on one of them).
    per_instance = defaultdict(set)
    for name, instances in series.items():
        for instance in instances:
            per_instance[instance].add(name)
    first, second = per_instance.values()
    assert first == second, first ^ second
