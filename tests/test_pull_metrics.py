"""Pull mode (OTEL_METRICS_EXPORTER=prometheus): each app serves its own metrics at
GET /metrics, in the OpenMetrics text format, under the contract's Prometheus names, with
``service_name`` on every series; scrapes are neither traced nor counted as requests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from modelobs.apps import gateway, model_service
from modelobs.telemetry import Telemetry, build_telemetry
from modelobs.telemetry.providers import metrics_exporters

from ._native_bins import require_binary
from .conftest import VALID_RECORD, Stack, make_settings
from .promql import known_metric_names
from .servers import free_port, serve

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
PROMETHEUS_DIR = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
SCRAPE_PULL = PROMETHEUS_DIR / "scrape-pull.yml"


@dataclass
class PullStack:
    model_url: str
    gateway_url: str
    model: Telemetry
    gateway: Telemetry
    model_spans: InMemorySpanExporter


def _telemetry(service: str, spans: InMemorySpanExporter) -> Telemetry:
    return build_telemetry(service, span_exporter=spans, log_exporter=InMemoryLogRecordExporter())


@pytest.fixture
def pull(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PullStack]:
    """Both apps in this process, each with its own provider and registry."""
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    model_port = free_port()
    settings = make_settings(model_dir, tmp_path, model_url=f"http://127.0.0.1:{model_port}")
    model_spans = InMemorySpanExporter()
    model_tel = _telemetry("model-service", model_spans)
    gateway_tel = _telemetry("gateway", InMemorySpanExporter())
    model_app = model_service.create_app(settings, model_tel)
    gateway_app = gateway.create_app(settings, gateway_tel)
    with serve(model_app, model_port) as model_url, serve(gateway_app) as gateway_url:
        yield PullStack(model_url, gateway_url, model_tel, gateway_tel, model_spans)
    model_tel.shutdown()
    gateway_tel.shutdown()


def _scrape(url: str) -> dict[str, list]:
    """Family name -> samples, parsed as OpenMetrics (what Prometheus asks for first)."""
    response = httpx.get(f"{url}/metrics", headers={"Accept": OPENMETRICS})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    return {f.name: f.samples for f in text_string_to_metric_families(response.text)}


def _predict(stack: PullStack, n: int) -> None:
    for _ in range(n):
        response = httpx.post(f"{stack.gateway_url}/v1/predict", json={"record": VALID_RECORD})
        assert response.status_code == 200


def test_each_app_serves_only_its_own_series(pull: PullStack) -> None:
    _predict(pull, 3)
    model, gw = _scrape(pull.model_url), _scrape(pull.gateway_url)

    predictions = model["modelobs_predictions"]
    assert sum(s.value for s in predictions if s.name == "modelobs_predictions_total") == 3
    assert "modelobs_predictions" not in gw
    assert "http_client_request_duration_seconds" in gw  # gateway -> model calls
    for service, families in (("model-service", model), ("gateway", gw)):
        labels = [
            s.labels for name, samples in families.items() if name != "target" for s in samples
        ]
        assert {lbl.get("service_name") for lbl in labels} == {service}
        # the resource labels the collector path copies on, without the SDK's bookkeeping
        assert all(lbl["service_namespace"] == "modelobs" for lbl in labels)
        assert all(lbl["service_instance_id"] for lbl in labels)
        assert not {k for lbl in labels for k in lbl if k.startswith(("telemetry_", "process_"))}
    # nothing in prometheus_client's process-wide registry: two apps would merge there
    assert not [m for m in REGISTRY.collect() if m.name.startswith(("modelobs", "http_"))]


def test_scrapes_are_neither_traced_nor_counted(pull: PullStack) -> None:
    _predict(pull, 2)
    for _ in range(3):
        _scrape(pull.model_url)
    pull.model.tracer_provider.force_flush()
    paths = {s.attributes.get("url.path") for s in pull.model_spans.get_finished_spans()}
    assert "/metrics" not in paths and "/predict" in paths
    durations = _scrape(pull.model_url)["http_server_request_duration_seconds"]
    routes = {s.labels["http_route"] for s in durations if s.name.endswith("_count")}
    assert routes == {"/predict"}


def test_pull_names_are_the_contract_names(pull: PullStack) -> None:
    """The names the collector path gives are in docs/contract.md; pull mode gives those."""
    _predict(pull, 2)
    exact, prefixes = known_metric_names()
    for url in (pull.model_url, pull.gateway_url):
        _scrape(url)  # the reader's collection count appears from the second scrape on
        names = {s.name for samples in _scrape(url).values() for s in samples}
        assert "otel_sdk_processor_span_queue_capacity" in names
        assert "otel_sdk_metric_reader_collection_duration_seconds_count" in names
        unknown = {n for n in names - {"target_info"} if n not in exact}
        unknown = {n for n in unknown if not n.startswith(prefixes)}
        assert not unknown, f"{url}: not in docs/contract.md: {sorted(unknown)}"


def test_no_metrics_route_when_metrics_are_pushed(stack: Stack) -> None:
    assert httpx.get(f"{stack.model_url}/metrics").status_code == 404


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", {"otlp"}),
        ("otlp", {"otlp"}),
        ("prometheus", {"prometheus"}),
        (" Prometheus , otlp ", {"otlp", "prometheus"}),
        ("none", set()),
    ],
)
def test_metrics_exporter_values(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: set
) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", value)
    assert metrics_exporters() == expected


def test_unknown_metrics_exporter_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp,statsd")
    with pytest.raises(ValueError, match="statsd"):
        metrics_exporters()


def test_pull_scrape_config_loads_and_targets_the_service_ports(tmp_path: Path) -> None:
    """deploy/prometheus/scrape-pull.yml, included as its header says, is a valid config;
    its targets are the services' ports (docs/contract.md) natively and in docker-compose."""
    promtool = require_binary("PROMTOOL_BIN", "promtool")
    main = tmp_path / "prometheus.yml"
    main.write_text(yaml.safe_dump({"scrape_config_files": [str(SCRAPE_PULL)]}))
    res = subprocess.run(
        [promtool, "check", "config", str(main)], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    (job,) = yaml.safe_load(SCRAPE_PULL.read_text())["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (name,) = job["file_sd_configs"][0]["files"]
    expected = {
        "targets": ["127.0.0.1:8000", "127.0.0.1:8080"],
        "targets-compose": ["model-service:8000", "gateway:8080"],
    }
    for directory, targets in expected.items():
        path = PROMETHEUS_DIR / directory / Path(name).name
        assert [t for g in yaml.safe_load(path.read_text()) for t in g["targets"]] == targets
