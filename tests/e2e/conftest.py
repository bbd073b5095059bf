"""One real native stack for the whole e2e session, started from deploy/native's components.

Every port is a free one picked at start, and the run directory is a temporary one, so a
developer's `make up` stack (default ports, var/run) is left alone. Besides the default stack
(collector, Jaeger, Prometheus, Alertmanager, webhook receiver, VictoriaLogs, model service,
gateway, steady load) the session runs:

* ``model-slow`` + ``gateway-slow``: a model service whose own flag file has the
  ``inference-latency`` flag on for every request (300 ms), behind its own gateway. Its traces last > TAIL_SAMPLING_LATENCY_MS (200 ms here), so tail sampling
  keeps every one of them: the trace, log and exemplar tests use it, and the alert test uses
  it to raise the p99.
* ``gateway-dead``: a gateway whose model URL is a closed port, so it answers 503 and its
  traces have ERROR spans (kept by the status_code policy).
* ``gateway-sampling``: a plain gateway with service.instance.id=e2e-sampling, used only by
  the sampling test, so its span-metric series count exactly the requests that test sent.

The collector samples TAIL_SAMPLING_PERCENT=10 % of the other traces, as in production.
A missing binary FAILS every test (never a skip).
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
from deploy.native import components as native
from deploy.native.binaries import BinariesMissing, find_binaries
from deploy.native.readiness import log_tail
from deploy.native.summary import iter_spans, logs_query, prom_query

from modelobs.flags import store
from modelobs.model.data import EXAMPLE_RECORD
from modelobs.settings import Settings
from modelobs.telemetry.exemplars import TailSamplingPolicy
from tests.processes import MODELOBS, start_or_fail
from tests.rule_tuning import tune_rules
from tests.waiting import wait_until

SLOW_LATENCY_MS = 300
TAIL_LATENCY_MS = 200
TAIL_PERCENT = 10
DECISION_WAIT_S = 2
SAMPLING_INSTANCE = "e2e-sampling"
# The p99 alert: threshold 0.2 s (production 1 s) and for: 10s (production 10m).
P99_THRESHOLD_S = 0.2
ALERT = "HttpLatencyP99High"


@dataclass
class E2EStack:
    cfg: native.StackConfig
    bins: dict[str, str]
    gateway_url: str
    slow_gateway_url: str
    dead_gateway_url: str
    sampling_gateway_url: str

    @property
    def ports(self) -> native.Ports:
        return self.cfg.ports

    @property
    def jaeger_url(self) -> str:
        return self.cfg.url(self.ports.jaeger_query_http)

    @property
    def prom_url(self) -> str:
        return self.cfg.url(self.ports.prometheus)

    @property
    def alertmanager_url(self) -> str:
        return self.cfg.url(self.ports.alertmanager)

    @property
    def webhook_url(self) -> str:
        return self.cfg.url(self.ports.webhook)

    @property
    def logs_url(self) -> str:
        """VictoriaLogs, the native log store (LogsQL at /select/logsql/query)."""
        return self.cfg.url(self.ports.logs)

    @property
    def files_dir(self) -> Path:
        return self.cfg.run_dir / "otelcol" / "files"

    def log_tail(self, component: str) -> str:
        return log_tail(self.cfg.run_dir / f"{component}.log")


def require_binaries() -> dict[str, str]:
    try:
        return find_binaries()
    except BinariesMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def bins() -> dict[str, str]:
    return require_binaries()


@pytest.fixture(scope="session")
def e2e(bins: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EStack]:
    run_dir = tmp_path_factory.mktemp("native-run")
    ports, extra = native.Ports.free(extra=5)
    slow_model_port, slow_gw_port, dead_gw_port, sampling_gw_port, dead_model_port = extra
    # Nothing will listen on dead_model_port.

    rules_dir = run_dir / "rules"
    rules_dir.mkdir()
    (rules_dir / "modelobs.yml").write_text(
        tune_rules(
            overrides_for={ALERT: "10s"},
            thresholds={"http_p99_latency_seconds": P99_THRESHOLD_S},
            # Long-window groups run once a minute in production; a short-lived stack's
            # dashboard and alert checks should not wait a minute for their first value.
            interval="5s",
        )
    )
    service_env = {
        "OTEL_METRIC_EXPORT_INTERVAL": "2000",
        "OTEL_BSP_SCHEDULE_DELAY": "300",
        "OTEL_BLRP_SCHEDULE_DELAY": "300",
        # The exemplar filter mirrors the collector's tail-sampling policy.
        "TAIL_SAMPLING_LATENCY_MS": str(TAIL_LATENCY_MS),
        "TAIL_SAMPLING_PERCENT": str(TAIL_PERCENT),
    }
    cfg = native.StackConfig(
        run_dir=run_dir,
        ports=ports,
        extra_env={
            "otelcol": {
                "TAIL_SAMPLING_DECISION_WAIT": f"{DECISION_WAIT_S}s",
                "TAIL_SAMPLING_LATENCY_MS": str(TAIL_LATENCY_MS),
                "TAIL_SAMPLING_PERCENT": str(TAIL_PERCENT),
            },
            **dict.fromkeys(("model-service", "gateway", "load"), service_env),
        },
        rules_dir=rules_dir,
        load_rps=5,
        load_max_seconds=900,  # the suite takes a few minutes; the load never outlives 15 min
    )
    slow_flags = run_dir / "flags-slow.json"
    store.switch(
        slow_flags, "inference-latency", "always", {"share": 1.0, "delay_ms": SLOW_LATENCY_MS}
    )
    extras = [
        native.resolve(
            native.SPECS["model-service"],
            cfg,
            name="model-slow",
            params={"port": str(slow_model_port)},
            env={"MODELOBS_FLAGS_FILE": str(slow_flags)},
        ),
        native.resolve(
            native.SPECS["gateway"],
            cfg,
            name="gateway-slow",
            params={"port": str(slow_gw_port), "model_url": cfg.url(slow_model_port)},
            depends_on=("model-slow",),
        ),
        native.resolve(
            native.SPECS["gateway"],
            cfg,
            name="gateway-dead",
            params={"port": str(dead_gw_port), "model_url": cfg.url(dead_model_port)},
            # Its model service is meant to be absent: ready once the gateway itself runs.
            ready="http://127.0.0.1:{port}/healthz",
            depends_on=("otelcol",),
        ),
        native.resolve(
            native.SPECS["gateway"],
            cfg,
            name="gateway-sampling",
            params={"port": str(sampling_gw_port)},
            env={"OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id={SAMPLING_INSTANCE}"},
        ),
    ]
    # The load starts last: after every extra service is ready.
    processes = native.default_stack(cfg, bins) + extras
    for process in processes:
        if process.name == "load":
            process.depends_on = tuple(p.name for p in processes if p is not process)
    supervisor = start_or_fail(run_dir, processes, "e2e stack")
    try:
        yield E2EStack(
            cfg=cfg,
            bins=bins,
            gateway_url=cfg.url(ports.gateway),
            slow_gateway_url=cfg.url(slow_gw_port),
            dead_gateway_url=cfg.url(dead_gw_port),
            sampling_gateway_url=cfg.url(sampling_gw_port),
        )
    finally:
        supervisor.stop(say=lambda _m: None)


@pytest.fixture(scope="session")
def traffic(e2e: E2EStack) -> dict[str, str]:
    """Bad inputs mixed with valid records through the main gateway (the steady load runs
    anyway), one slow and one failing request: every kind of series exists afterwards."""
    for scenario in ("bad-inputs", "label-shift"):
        # --at 0: the bad inputs / the feedback start at once; label-shift sends feedback
        # for its own predictions (accuracy, label delay, feedback counters).
        run_load(e2e.gateway_url, scenario, "--at", "0", "--requests", "300", "--rps", "50")
    slow = send(e2e.slow_gateway_url)
    dead = send(e2e.dead_gateway_url)
    assert slow.response.status_code == 200, slow.response.text
    assert dead.response.status_code == 503, dead.response.text
    return {"slow": slow.trace_id, "dead": dead.trace_id}


# --------------------------------------------------------------------------- helpers


def run_load(url: str, scenario: str, *args: str) -> None:
    """`modelobs load`, bounded in count and time."""
    cmd = [MODELOBS, "load", "--url", url, "--scenario", scenario, *args, "--quiet"]
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, env={**os.environ}, check=False
    )
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}"


VALID_RECORD = EXAMPLE_RECORD


@dataclass
class Sent:
    trace_id: str
    parent_span_id: str
    response: httpx.Response


def send(gateway_url: str, client: httpx.Client | None = None, trace_id: str | None = None) -> Sent:
    """One prediction through a gateway, under a trace id we choose (W3C traceparent; a random
    one unless ``trace_id`` is given)."""
    trace_id, parent = trace_id or secrets.token_hex(16), secrets.token_hex(8)
    headers = {"traceparent": f"00-{trace_id}-{parent}-01"}
    post = client.post if client else httpx.post
    response = post(
        f"{gateway_url}/v1/predict", json={"record": VALID_RECORD}, headers=headers, timeout=10
    )
    return Sent(trace_id, parent, response)


def kept_trace_id() -> str:
    """A random trace id that the collector's probabilistic policy keeps (TAIL_PERCENT, the
    hash salt of the settings, as the collector's): a trace that reaches Jaeger however fast."""
    policy = replace(TailSamplingPolicy.from_settings(Settings()), percent=TAIL_PERCENT)
    while not policy.keeps_trace_id(trace_id := secrets.randbits(128)):
        pass
    return format(trace_id, "032x")


def jaeger_trace(e2e: E2EStack, trace_id: str) -> list[dict]:
    """The spans Jaeger has for ``trace_id`` ([] when it has none)."""
    response = httpx.get(f"{e2e.jaeger_url}/api/v3/traces/{trace_id}", timeout=5)
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return list(iter_spans(response.json()))


def wait_for_trace(e2e: E2EStack, trace_id: str, min_spans: int, timeout_s: float = 30) -> list:
    spans: list[dict] = []

    def enough() -> list[dict] | None:
        spans[:] = jaeger_trace(e2e, trace_id)
        return list(spans) if len(spans) >= min_spans else None

    return wait_until(
        enough,
        lambda: (
            f"Jaeger has {len(spans)} span(s) of trace {trace_id} (wanted >= {min_spans}); "
            f"collector log:\n{e2e.log_tail('otelcol')}"
        ),
        timeout_s,
        poll_s=0.5,
    )


def prom(e2e: E2EStack, query: str) -> list[dict]:
    return prom_query(e2e.prom_url, query)


def logs(e2e: E2EStack, query: str) -> list[dict]:
    """Log records matching a LogsQL ``query`` in the stack's log store."""
    return logs_query(e2e.logs_url, query)


def wait_for_logs(e2e: E2EStack, query: str, timeout_s: float = 30) -> list[dict]:
    return wait_until(
        lambda: logs(e2e, query),
        lambda: (
            f"the log store has no record for {query!r}; collector log:\n{e2e.log_tail('otelcol')}"
        ),
        timeout_s,
        poll_s=0.5,
    )


def wait_for_series(e2e: E2EStack, query: str, timeout_s: float = 60) -> list[dict]:
    def finite() -> list[dict]:
        return [r for r in prom(e2e, query) if r["value"][1] not in ("NaN", "+Inf", "-Inf")]

    return wait_until(finite, f"Prometheus returned no data for: {query}", timeout_s, poll_s=1)
