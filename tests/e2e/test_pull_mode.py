"""Pull mode end to end: the real Prometheus scrapes a model service and a gateway started with
OTEL_METRICS_EXPORTER=prometheus, through the shipped deploy/prometheus/scrape-pull.yml (its
targets rendered to this test's ports). Every dashboard query about the services returns
data, the alert rules' key series are there, and the services expose the same metric names
as the push path gives through the collector (the session's e2e stack).

Nothing receives OTLP here, so the services' span and log exports fail: the dropped-telemetry
panel and ServiceTelemetryDropped see those losses through the SDK's self-metrics.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from deploy.native import components as native
from deploy.native import render
from deploy.native.summary import prom_query
from deploy.native.supervisor import Supervisor, SupervisorError

from modelobs.model.data import EXAMPLE_RECORD
from tests.dashboard_queries import DashboardQuery, prometheus_queries
from tests.rule_tuning import RULES_FILE, tune_rules
from tests.waiting import poll_until

from .conftest import E2EStack, run_load

pytestmark = pytest.mark.e2e

SCRAPE_PULL = render.PROMETHEUS_YML.parent / "scrape-pull.yml"
# Made by the collector (its own metrics, the span metrics connector): no pull equivalent.
COLLECTOR_MADE = re.compile(r"otelcol_|traces_span_metrics_")
# The push path's OTLP metric exporter counts its own exports; a scraped app has none.
PUSH_ONLY = re.compile(r"otel_sdk_exporter_metric_data_point_")
# Made by Prometheus (alert states, recording rules): they differ with what fires where.
PROMETHEUS_MADE = re.compile(r"ALERTS|.*:")
SERVICES = ("model-service", "gateway")


@dataclass
class PullStack:
    prom_url: str
    gateway_url: str


def render_pull_config(out_dir: Path, ports: native.Ports, rules: str) -> Path:
    """A prometheus.yml that includes the shipped scrape-pull.yml unchanged, next to a copy
    of its target files with this stack's ports, and loads ``rules``."""
    by_default = render.port_map(ports)
    scrape = yaml.safe_load(SCRAPE_PULL.read_text())
    for job in scrape["scrape_configs"]:
        for sd in job["file_sd_configs"]:
            for name in sd["files"]:
                groups = yaml.safe_load((SCRAPE_PULL.parent / name).read_text())
                for group in groups:
                    group["targets"] = [
                        render.restack_address(t, by_default) for t in group["targets"]
                    ]
                (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
                (out_dir / name).write_text(yaml.safe_dump(groups))
    (out_dir / SCRAPE_PULL.name).write_text(SCRAPE_PULL.read_text())
    (out_dir / RULES_FILE.name).write_text(rules)
    main = {
        "global": {"scrape_interval": "2s", "scrape_timeout": "2s", "evaluation_interval": "2s"},
        "rule_files": [RULES_FILE.name],
        "scrape_config_files": [SCRAPE_PULL.name],
    }
    path = out_dir / "prometheus.yml"
    path.write_text(yaml.safe_dump(main))
    return path


@pytest.fixture(scope="module")
def pull(
    bins: dict[str, str], model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PullStack]:
    run_dir = tmp_path_factory.mktemp("pull-run")
    ports, _ = native.Ports.free()
    config = render_pull_config(run_dir, ports, tune_rules(interval="2s"))
    service_env = {
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_BSP_SCHEDULE_DELAY": "300",
        "OTEL_BLRP_SCHEDULE_DELAY": "300",
        "MODELOBS_MODEL_DIR": str(model_dir),
    }
    cfg = native.StackConfig(
        run_dir=run_dir,
        ports=ports,
        extra_env=dict.fromkeys(SERVICES, service_env),
        load_max_seconds=0,
    )
    processes = [
        # The stack's own Prometheus declaration, with this config instead of the push one.
        native.resolve(
            native.SPECS["prometheus"],
            cfg,
            bins,
            params={"prometheus_yml": str(config)},
            depends_on=(),
        ),
        native.resolve(native.SPECS["model-service"], cfg, bins, depends_on=()),
        native.resolve(native.SPECS["gateway"], cfg, bins),
    ]
    supervisor = Supervisor(run_dir)
    try:
        supervisor.start(processes, say=lambda _m: None)
    except (SupervisorError, LookupError) as exc:
        pytest.fail(f"the pull-mode stack did not start: {exc}", pytrace=False)
    try:
        gateway_url = cfg.url(ports.gateway)
        for scenario in ("bad-inputs", "label-shift"):
            run_load(gateway_url, scenario, "--at", "0", "--requests", "300", "--rps", "50")
        yield PullStack(prom_url=cfg.url(ports.prometheus), gateway_url=gateway_url)
    finally:
        supervisor.stop(say=lambda _m: None)


def _service_queries(service: str) -> list[DashboardQuery]:
    files = (
        None if service == "model-service" else {"service-overview.json", "telemetry-pipeline.json"}
    )
    return [
        q
        for q in prometheus_queries(values={"service": service})
        if not COLLECTOR_MADE.search(q.expr) and (files is None or q.dashboard_file in files)
    ]


def _wait_for_data(prom_url: str, exprs: list[str], timeout_s: float) -> list[str]:
    """The expressions still without data at the deadline (rates need two scrapes, the
    drift and quality gauges a recomputation)."""
    empty = list(exprs)

    def all_have_data() -> bool:
        empty[:] = [e for e in empty if not prom_query(prom_url, e)]
        return not empty

    poll_until(all_have_data, timeout_s, poll_s=2)
    return empty


def test_scrape_targets_are_the_apps_own_ports(pull: PullStack) -> None:
    targets = httpx.get(f"{pull.prom_url}/api/v1/targets", timeout=5).json()["data"]
    assert {t["labels"]["job"] for t in targets["activeTargets"]} == {"modelobs-services"}
    up = 'count(up{job="modelobs-services"} == 1) == 2'
    assert not _wait_for_data(pull.prom_url, [up], timeout_s=30), targets


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_dashboard_query_returns_data(pull: PullStack, service: str) -> None:
    queries = {q.expr: q for q in _service_queries(service)}
    assert len(queries) > 20, "the dashboards' service queries were not found"
    empty = _wait_for_data(pull.prom_url, list(queries), timeout_s=90)
    assert not empty, f"{len(empty)} of {len(queries)} service queries return no data:\n" + (
        "\n".join(f"  {queries[e].where}" for e in empty)
    )


@pytest.mark.parametrize("service", SERVICES)
def test_alert_key_series_and_drops_are_seen(pull: PullStack, service: str) -> None:
    """ServiceTelemetryMissing's key series is there, and ServiceTelemetryDropped's
    expression sees the span exports that fail (nothing listens for OTLP here)."""
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    alerts = {r["alert"]: r["expr"] for g in groups for r in g["rules"] if "alert" in r}
    key = f'otel_sdk_metric_reader_collection_duration_seconds_count{{service_name="{service}"}}'
    dropped = f"({alerts['ServiceTelemetryDropped']}) and on (service_name) {key}"
    # A failure counter first scraped at its final value shows no increase: keep spans
    # failing while waiting, so the rate has two different points to see.
    signals: set[str] = set()
    with httpx.Client(base_url=pull.gateway_url, timeout=10) as client:

        def spans_dropped_seen() -> bool:
            client.post("/v1/predict", json={"record": EXAMPLE_RECORD})
            signals.clear()
            signals.update(r["metric"]["signal"] for r in prom_query(pull.prom_url, dropped))
            return "spans" in signals

        poll_until(spans_dropped_seen, timeout_s=90, poll_s=0.5)
    assert prom_query(pull.prom_url, key), f"no {key}"
    assert "spans" in signals, f"failed span exports not seen by the rule: {signals}"


@pytest.mark.parametrize("service", SERVICES)
def test_names_equal_the_push_paths(
    pull: PullStack, e2e: E2EStack, traffic: dict, service: str
) -> None:
    def names(prom_url: str) -> set[str]:
        found = prom_query(prom_url, f'group by (__name__) ({{service_name="{service}"}})')
        return {
            r["metric"]["__name__"]
            for r in found
            if not COLLECTOR_MADE.match(r["metric"]["__name__"])
            and not PUSH_ONLY.match(r["metric"]["__name__"])
            and not PROMETHEUS_MADE.match(r["metric"]["__name__"])
            and r["metric"]["__name__"] != "target_info"
        }

    pulled, pushed = names(pull.prom_url), names(e2e.prom_url)
    assert pulled and pulled == pushed, (
        f"only pulled: {sorted(pulled - pushed)}\nonly pushed: {sorted(pushed - pulled)}"
    )
