"""One native stack for the alert drills (module scope), tuned so a drill takes seconds, not
the production quarter of an hour:

* rules rendered from the shipped file by tests/rule_tuning.py: evaluated every 5 s, ``[5m]``
  windows read ``[30s]`` and ``[15m]`` ones ``[2m]`` (a fault switched off is forgotten in
  half a minute; a leak's growth is read over two), ``for: 10s`` on
  the drilled alerts, the accuracy threshold at 0.6 (a 100-label window of a model whose
  accuracy is about 0.73 dips under the shipped 0.65 by chance now and then);
* services: metrics every 2 s, flag file polled every 200 ms, drift window 200 rows
  (recomputed every 50 rows or 2 s), quality window 100 labels;
* the steady load at 10 requests/s, which with a flag file sends feedback for half of its
  predictions (loadgen/flag_driven.py).

Everything else (thresholds, expressions, the collector's tail sampling, Alertmanager's
routing to the webhook receiver) is what ships. A missing binary FAILS (never a skip).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from deploy.native import components as native
from deploy.native.supervisor import Supervisor, SupervisorError

from modelobs.drills.backends import Backends
from modelobs.model.train import train_and_save
from tests.e2e.conftest import require_binaries
from tests.rule_tuning import tune_rules

DRILLED_ALERTS = (
    "HttpLatencyP99High",
    "HttpErrorRatioHigh",
    "ModelDriftDetected",
    "ModelAccuracyLow",
    "ProcessMemoryGrowing",
)
ACCURACY_MIN = 0.6


@dataclass
class DrillStack:
    cfg: native.StackConfig
    backends: Backends

    @property
    def flags_file(self) -> Path:
        return self.cfg.run_dir / "flags.json"

    def log_tail(self, component: str) -> str:
        from deploy.native.readiness import log_tail

        return log_tail(self.cfg.run_dir / f"{component}.log")


@pytest.fixture(scope="module")
def drill_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrillStack]:
    bins = require_binaries()
    run_dir = tmp_path_factory.mktemp("drill-run")
    ports, _ = native.Ports.free()
    rules_dir = run_dir / "rules"
    rules_dir.mkdir()
    (rules_dir / "modelobs.yml").write_text(
        tune_rules(
            overrides_for=dict.fromkeys(DRILLED_ALERTS, "10s"),
            thresholds={"model_accuracy_min": ACCURACY_MIN},
            interval="5s",
            windows={"5m": "30s", "15m": "2m"},
        )
    )
    service_env = {
        "OTEL_METRIC_EXPORT_INTERVAL": "2000",
        "OTEL_BSP_SCHEDULE_DELAY": "300",
        "OTEL_BLRP_SCHEDULE_DELAY": "300",
        "MODELOBS_FLAGS_POLL_MS": "200",
        "MODELOBS_DRIFT_WINDOW": "200",
        "MODELOBS_DRIFT_MIN_WINDOW": "100",
        "MODELOBS_DRIFT_RECOMPUTE_EVERY": "50",
        "MODELOBS_DRIFT_INTERVAL_S": "2",
        "MODELOBS_QUALITY_WINDOW": "100",
    }
    # Trained here, not by the model service's first start: its readiness then waits only for
    # the start itself.
    train_and_save(run_dir / "model")
    cfg = native.StackConfig(
        run_dir=run_dir,
        ports=ports,
        extra_env={
            "otelcol": {"TAIL_SAMPLING_DECISION_WAIT": "2s"},
            **dict.fromkeys(("model-service", "gateway", "load"), service_env),
        },
        rules_dir=rules_dir,
        load_rps=10,
        load_max_seconds=1800,  # never outlives the module by long
        # The machine is shared: a Python service has been seen to take a minute to start.
        ready_timeout_s=300,
    )
    supervisor = Supervisor(run_dir)
    started = time.monotonic()
    try:
        supervisor.start(native.default_stack(cfg, bins), say=lambda _m: None)
    except (SupervisorError, LookupError) as exc:
        pytest.fail(f"the drill stack did not start: {exc}", pytrace=False)
    print(f"\ndrill stack up in {time.monotonic() - started:.1f}s, run dir {run_dir}")
    backends = Backends(
        prometheus=cfg.url(ports.prometheus),
        alertmanager=cfg.url(ports.alertmanager),
        jaeger=cfg.url(ports.jaeger_query_http),
        logs=cfg.url(ports.logs),
        webhook=cfg.url(ports.webhook),
    )
    try:
        yield DrillStack(cfg, backends)
    finally:
        supervisor.stop(say=lambda _m: None)
