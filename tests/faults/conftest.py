"""One real native stack for the fault tests, which kill, stop and bring back its parts.

Collector, Jaeger, Prometheus, Alertmanager (+ webhook receiver), VictoriaLogs, model service
and gateway on free ports in a temporary directory, without the steady load: each test drives
its own load (tests/faults/load.py) so it can count every request. Differences from the e2e
stack, each for a count the tests make:

* tail sampling keeps 100 % of traces, so "every trace the collector accepted is in Jaeger"
  can be checked trace id by trace id;
* the services also serve their metrics at ``GET /metrics`` (OTEL_METRICS_EXPORTER=otlp,
  prometheus), so the SDK's self-metrics can be read while the collector is down.

Every test leaves the stack as it found it (whatever it killed runs again). A missing binary
FAILS every test (never a skip).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from deploy.native import components as native
from deploy.native.readiness import log_tail
from deploy.native.summary import iter_spans
from deploy.native.supervisor import Process, Supervisor

from tests.e2e.conftest import require_binaries
from tests.processes import start_or_fail
from tests.rule_tuning import tune_rules

SERVICES = ("model-service", "gateway")
DECISION_WAIT_S = 2
# The alert the monitoring-outage test raises: more than 5 % of gateway requests failing,
# for 10 s (production 5m).
ERROR_ALERT = "HttpErrorRatioHigh"


@dataclass
class FaultStack:
    cfg: native.StackConfig
    supervisor: Supervisor
    processes: dict[str, Process] = field(default_factory=dict)

    @property
    def ports(self) -> native.Ports:
        return self.cfg.ports

    def url(self, port: int, path: str = "") -> str:
        return self.cfg.url(port, path)

    @property
    def gateway_url(self) -> str:
        return self.url(self.ports.gateway)

    @property
    def model_url(self) -> str:
        return self.url(self.ports.model)

    def pid(self, name: str) -> int:
        return self.supervisor.record(name).pid

    def kill(self, name: str, *, graceful: bool = False) -> None:
        """SIGKILL ``name`` (SIGTERM and wait when ``graceful``)."""
        import signal

        self.supervisor.kill(name, signal.SIGTERM if graceful else signal.SIGKILL)

    def start(self, name: str) -> None:
        """Bring ``name`` back (same ports, log and data directory) and wait until ready."""
        self.supervisor.restart(self.processes[name])

    def add(self, process: Process) -> None:
        """Start one more process in this stack (stopped with it)."""
        self.processes[process.name] = process
        self.supervisor.restart(process)

    def log_tail(self, name: str, lines: int = 40) -> str:
        return log_tail(self.cfg.run_dir / f"{name}.log", lines)

    def log_text(self, name: str) -> str:
        return (self.cfg.run_dir / f"{name}.log").read_text(errors="replace")

    def exported_text(self, name: str) -> str:
        """The collector's file export ``name`` (traces.jsonl, logs.jsonl; "" before any)."""
        path = self.cfg.run_dir / "otelcol" / "files" / name
        return path.read_text(errors="replace") if path.exists() else ""

    def exported_spans(self) -> Iterator[dict]:
        """Every span of the collector's trace file export (each with its ``_service``)."""
        for line in self.exported_text("traces.jsonl").splitlines():
            if line.strip():
                yield from iter_spans({"result": json.loads(line)})


@pytest.fixture(scope="session")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    with native_stack(tmp_path_factory.mktemp("fault-run")) as stack:
        yield stack


@contextmanager
def native_stack(run_dir: Path) -> Iterator[FaultStack]:
    """The stack this module describes, in ``run_dir``; stopped when the block ends."""
    bins = require_binaries()
    ports, _ = native.Ports.free()
    rules_dir = run_dir / "rules"
    rules_dir.mkdir()
    rules_dir.joinpath("modelobs.yml").write_text(
        tune_rules(overrides_for={ERROR_ALERT: "10s"}, interval="5s")
    )
    service_env = {
        "OTEL_METRICS_EXPORTER": "otlp,prometheus",
        "OTEL_METRIC_EXPORT_INTERVAL": "2000",
        "OTEL_BSP_SCHEDULE_DELAY": "300",
        "OTEL_BLRP_SCHEDULE_DELAY": "300",
        "TAIL_SAMPLING_PERCENT": "100",
    }
    cfg = native.StackConfig(
        run_dir=run_dir,
        ports=ports,
        extra_env={
            "otelcol": {
                "TAIL_SAMPLING_DECISION_WAIT": f"{DECISION_WAIT_S}s",
                "TAIL_SAMPLING_PERCENT": "100",
            },
            **dict.fromkeys(SERVICES, service_env),
        },
        rules_dir=rules_dir,
        load_max_seconds=0,
    )
    processes = native.default_stack(cfg, bins)
    for process in processes:
        if process.name == "prometheus":
            # Firing alerts are re-sent every 2 s (default 1 m): one pending while Alertmanager
            # was down reaches it soon after it is back.
            process.argv.append("--rules.alert.resend-delay=2s")
    supervisor = start_or_fail(run_dir, processes, "fault stack")
    try:
        yield FaultStack(cfg, supervisor, {p.name: p for p in processes})
    finally:
        supervisor.stop(say=lambda _m: None)
