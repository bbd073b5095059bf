"""The agent and gateway collector configs (otel-collector/agent.yaml, gateway.yaml): the real
collector accepts them with a fixed gateway list and with a headless Service's DNS name,
rejects a broken resolver, and the gateway samples and counts exactly as config.yaml does."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy.native import REPO

from ._native_bins import otelcol_validate

COLLECTOR_DIR = REPO / "otel-collector"
AGENT = COLLECTOR_DIR / "agent.yaml"
GATEWAY = COLLECTOR_DIR / "gateway.yaml"
SINGLE = COLLECTOR_DIR / "config.yaml"

STATIC_RESOLVER = '{static: {hostnames: ["127.0.0.1:4417", "127.0.0.1:4517"]}}'
DNS_RESOLVER = '{dns: {hostname: gw-headless.ns.svc.cluster.local, port: "4317"}}'


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def validate(config: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`otelcol validate` of ``config`` with only ``env`` (and a storage dir) set."""
    return otelcol_validate(config, {"COLLECTOR_STORAGE_DIR": str(tmp_path / "q"), **env})


@pytest.mark.parametrize("resolver", [STATIC_RESOLVER, DNS_RESOLVER], ids=["static", "dns"])
def test_agent_validates_with_either_resolver(resolver: str, tmp_path: Path) -> None:
    result = validate(AGENT, tmp_path, GATEWAY_RESOLVER=resolver)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("resolver", "error"),
    [
        (None, "no resolvers specified"),
        ("{static: {hostnames: [a:4317]}, dns: {hostname: b}}", "only one resolver"),
        ("{dns: {hostnme: b}}", "hostnme"),
    ],
    ids=["missing", "two", "misspelt"],
)
def test_agent_rejects_a_bad_resolver(resolver: str | None, error: str, tmp_path: Path) -> None:
    env = {"GATEWAY_RESOLVER": resolver} if resolver else {}
    result = validate(AGENT, tmp_path, **env)
    assert result.returncode != 0
    assert error in result.stderr, result.stderr


def test_gateway_validates(tmp_path: Path) -> None:
    result = validate(GATEWAY, tmp_path)
    assert result.returncode == 0, result.stderr


def test_agent_routes_traces_and_logs_by_trace_id_and_metrics_by_resource() -> None:
    doc = load(AGENT)
    pipelines = doc["service"]["pipelines"]
    exporters = doc["exporters"]
    routing = {
        name: {exporters[e]["routing_key"] for e in p["exporters"]} for name, p in pipelines.items()
    }
    assert routing == {"traces": {"traceID"}, "logs": {"traceID"}, "metrics": {"resource"}}


def test_agent_queues_on_disk_and_retries_without_deadline() -> None:
    doc = load(AGENT)
    storages = set(doc["service"]["extensions"])
    for name, exporter in doc["exporters"].items():
        queue = exporter["sending_queue"]
        assert queue["enabled"] and queue["storage"] in storages, name
        assert exporter["retry_on_failure"]["max_elapsed_time"] in ("0s", 0), name
        # The per-gateway queue would be in memory: failures must reach the disk queue.
        assert exporter["protocol"]["otlp"]["sending_queue"]["enabled"] is False, name


@pytest.mark.parametrize("path", [AGENT, GATEWAY], ids=["agent", "gateway"])
def test_memory_limiter_first_in_every_pipeline(path: Path) -> None:
    for name, pipeline in load(path)["service"]["pipelines"].items():
        assert pipeline["processors"][0] == "memory_limiter", name


def test_gateway_samples_as_the_single_collector() -> None:
    """The same policies (and the probabilistic policy's fixed default hash salt) give a
    trace the same decision on whichever gateway it lands as on one collector."""
    assert (
        load(GATEWAY)["processors"]["tail_sampling"] == load(SINGLE)["processors"]["tail_sampling"]
    )


def test_gateway_span_metrics_differ_from_single_only_by_instance_dimension() -> None:
    gateway = load(GATEWAY)["connectors"]["span_metrics"]
    single = dict(load(SINGLE)["connectors"]["span_metrics"])
    # One collector drops collector.instance.id; gateways keep it so their series differ.
    assert single.pop("exclude_dimensions") == ["collector.instance.id"]
    assert "exclude_dimensions" not in gateway
    assert gateway == single


def test_gateway_does_span_metrics_before_tail_sampling() -> None:
    pipelines = load(GATEWAY)["service"]["pipelines"]
    assert set(pipelines["traces"]["exporters"]) == {"span_metrics", "forward"}
    assert "tail_sampling" not in pipelines["traces"]["processors"]
    assert pipelines["traces/sampled"]["receivers"] == ["forward"]
    assert "tail_sampling" in pipelines["traces/sampled"]["processors"]
    assert "span_metrics" in pipelines["metrics"]["receivers"]


def env_default(value: str) -> str:
    """The default of a ``${env:NAME:-default}`` setting (the value itself when plain)."""
    match = re.fullmatch(r"\$\{env:\w+:-([^}]*)\}", str(value))
    return match.group(1) if match else str(value)


def seconds(duration: str) -> float:
    """A Go duration of one unit (``10s``, ``500ms``, ``1m``) in seconds."""
    number, unit = re.fullmatch(r"([\d.]+)(ms|s|m)", duration).groups()  # type: ignore[union-attr]
    return float(number) * {"ms": 0.001, "s": 1, "m": 60}[unit]


def test_gateway_journals_every_batch_before_tail_sampling() -> None:
    doc = load(GATEWAY)
    processors = doc["service"]["pipelines"]["traces/sampled"]["processors"]
    assert processors[:3] == ["memory_limiter", "trace_journal", "tail_sampling"]
    # On the volume the persistent queues use (it outlives the process).
    assert doc["processors"]["trace_journal"]["directory"].startswith(
        "${env:COLLECTOR_STORAGE_DIR:-/var/lib/otelcol/storage}/"
    )


def test_gateway_journal_outlives_the_decision_window() -> None:
    """A journal entry goes only after its trace reached the exporter's persistent queue:
    decision_wait, the batch processor's timeout behind tail sampling, and 2 s for the
    decision tick (1 s) and margin."""
    processors = load(GATEWAY)["processors"]
    retention = seconds(env_default(processors["trace_journal"]["retention"]))
    decision_wait = seconds(env_default(processors["tail_sampling"]["decision_wait"]))
    batch_timeout = seconds(processors["batch"]["timeout"])
    assert retention >= decision_wait + batch_timeout + 2
    assert seconds(processors["trace_journal"]["segment_duration"]) <= retention / 4
