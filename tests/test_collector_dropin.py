"""Static checks of the drop-in collector config (otel-collector/config.yaml) that `validate`
cannot make: no test-only exporters, batching in the sending queues (and behind tail sampling
only), retries without a deadline, debug endpoints on loopback, resource labels narrowed to
the ones that are used, exemplars only where they resolve, every variable documented."""

from __future__ import annotations

import re

import pytest
import yaml
from deploy.native import REPO

from modelobs.telemetry.metrics_endpoint import RESOURCE_LABELS
from tests.dashboard_queries import prometheus_queries

CONFIG = REPO / "otel-collector" / "config.yaml"
OVERLAY = REPO / "otel-collector" / "overlays" / "test-files.yaml"
# Where resource-attribute labels can be selected on.
READERS = [
    *sorted((REPO / "dashboards").glob("*.json")),
    *sorted((REPO / "deploy" / "prometheus" / "rules").glob("*.yml")),
    REPO / "deploy" / "grafana" / "provisioning" / "datasources" / "datasources.yaml",
]
RESOURCE_ATTRIBUTES = (
    "service.name",
    "service.namespace",
    "service.instance.id",
    "service.version",
    "deployment.environment.name",
    "host.name",
)


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def queued_exporters(config: dict) -> dict[str, dict]:
    return {n: e for n, e in config["exporters"].items() if (e or {}).get("sending_queue")}


def test_no_test_only_exporters(config: dict) -> None:
    assert not [n for n in config["exporters"] if n.split("/")[0] == "file"]
    overlay = yaml.safe_load(OVERLAY.read_text())
    assert set(overlay["exporters"]) == {"file/traces", "file/logs"}


def test_batching_in_the_sending_queues_and_behind_tail_sampling_only(config: dict) -> None:
    # A batch processor elsewhere would hold accepted data unpersisted and swallow
    # queue-full errors; behind tail_sampling it only groups the one-trace requests.
    batching = {
        name: pipeline["processors"]
        for name, pipeline in config["service"]["pipelines"].items()
        if "batch" in pipeline.get("processors", [])
    }
    assert batching == {"traces/sampled": ["memory_limiter", "tail_sampling", "batch"]}
    queued = queued_exporters(config)
    assert set(queued) == {"otlp_grpc/jaeger", "otlp_http/logs"}
    for name, exporter in queued.items():
        queue = exporter["sending_queue"]
        assert queue["storage"] == "file_storage/queue", name  # survives restarts
        assert queue["batch"]["flush_timeout"], name


def test_retries_never_drop_a_queued_batch_on_a_timer(config: dict) -> None:
    for name, exporter in queued_exporters(config).items():
        retry = exporter["retry_on_failure"]
        assert retry["enabled"] is True, name
        assert str(retry["max_elapsed_time"]) == "0", name


def test_debug_extensions_listen_on_loopback_only(config: dict) -> None:
    for name in ("pprof", "zpages"):
        assert name in config["service"]["extensions"]
        endpoint = config["extensions"][name]["endpoint"]
        default = re.fullmatch(r"\$\{env:\w+:-([^}]*)\}", endpoint)
        assert default, endpoint
        assert default.group(1).rsplit(":", 1)[0] in ("localhost", "127.0.0.1"), endpoint


def test_resource_labels_are_the_ones_that_are_used(config: dict) -> None:
    included = set(config["exporters"]["prometheus"]["resource_constant_labels"]["included"])
    text = "\n".join(path.read_text() for path in READERS)
    used = {a for a in RESOURCE_ATTRIBUTES if re.search(rf"\b{a.replace('.', '_')}\b", text)}
    assert included == used
    # Pull mode serves the same labels as this path.
    assert included == RESOURCE_LABELS


def test_exemplars_only_after_tail_sampling(config: dict) -> None:
    connectors = config["connectors"]
    assert connectors["span_metrics"]["exemplars"]["enabled"] is False
    assert connectors["span_metrics/sampled"]["exemplars"]["enabled"] is True
    pipelines = config["service"]["pipelines"]
    assert "span_metrics/sampled" in pipelines["traces/sampled"]["exporters"]
    assert "tail_sampling" in pipelines["traces/sampled"]["processors"]
    assert "span_metrics/sampled" in pipelines["metrics"]["receivers"]


def test_dashboards_take_exemplars_only_from_metrics_whose_exemplars_resolve() -> None:
    # The pre-sampling span metrics carry none (see test_exemplars_only_after_tail_sampling).
    for q in prometheus_queries():
        if q.exemplar:
            assert not re.search(r"traces_span_metrics_(calls|duration)", q.raw), q.where


def test_readme_lists_every_variable_the_configs_read() -> None:
    configs = [CONFIG, OVERLAY, *(CONFIG.parent / f"{tier}.yaml" for tier in ("agent", "gateway"))]
    read = set(re.findall(r"\$\{env:(\w+)", "".join(p.read_text() for p in configs)))
    readme = (REPO / "otel-collector" / "README.md").read_text()
    table = set(re.findall(r"^\| `(\w+)` \|", readme, re.MULTILINE))
    assert read == table
