"""Grafana's trace -> logs and trace -> metrics links, built from a real trace, find real data.

Grafana and Loki do not run here (AGPL, compose only), so this test does what Grafana's Jaeger
datasource does with a trace and checks the result against the real Jaeger and Prometheus and
the logs the real collector exported. What Grafana does was read in grafana/grafana (the code
informed this test; none of it is copied):

* pkg/tsdb/jaeger/client.go, ``JaegerClient.Trace``: GET ``<jaeger>/api/traces/<id>`` (Jaeger's
  v1 model, not API v3) and take ``data[0]``.
* pkg/tsdb/jaeger/utils/client_utils.go, ``TransformTraceResponse`` (formerly
  public/app/plugins/datasource/jaeger/responseTransform.ts, ``toSpanRow``): one row per span;
  ``serviceName`` and ``serviceTags`` are ``processes[span.processID].serviceName`` / ``.tags``,
  ``tags`` are the span's tags. Jaeger keeps service.name out of the process tags.
* public/app/features/explore/TraceView/crossSignalConfig.ts: ``getSpanTags`` lists the process
  tags, then the span tags, then spanId, traceId, name and duration; ``getFormattedTags`` keeps
  those whose key is a configured tag and writes ``<mapped name or key>="<value>"``, joined by
  ", ".
* public/app/features/explore/TraceView/components/logsLink.ts, ``getTraceToLogsQuery``: for Loki,
  ``__tags`` = the formatted tags; a custom query is used as it is (filterByTraceID and
  filterBySpanID do not apply).
* public/app/features/explore/TraceView/createSpanLink.tsx, ``legacyCreateSpanLinkFactory``: the
  logs link interpolates the query with ``__tags``, ``__trace`` and ``__span`` and is left out
  when a variable is undefined; every tracesToMetrics query gets ``__tags`` = the formatted
  metrics tags and is interpolated the same way, over the span's time range widened by the
  configured shifts. ``scopedVarsFromSpan`` / ``scopedVarsFromTrace`` (createTraceLink.ts) give
  ``__span.{spanId,traceId,duration,name,tags}`` and ``__trace.{duration,name,traceId}``.

Loki's index labels: the default OTLP resource attributes of Loki's
pkg/loghttp/push/otlp_config.go (``GlobalOTLPConfig.RegisterFlags``), dots turned into
underscores, plus those deploy/loki/config.yaml adds with ``action: index_label``.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.grafana_provisioning import provisioned_datasources, unescape

from ..waiting import poll_until
from .conftest import E2EStack, send, wait_for_series, wait_for_trace
from .test_metrics_logs import _log_records

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
LOKI_CONFIG = REPO / "deploy" / "loki" / "config.yaml"
LOKI_DEFAULT_INDEXED = (
    "service.name",
    "service.namespace",
    "service.instance.id",
    "deployment.environment",
    "deployment.environment.name",
    "cloud.region",
    "cloud.availability_zone",
    "k8s.cluster.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.container.name",
    "container.name",
    "k8s.replicaset.name",
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.cronjob.name",
    "k8s.job.name",
)
DATA_DEADLINE_S = 60
QUERY_STEP_S = 5
# the counters the metrics links read, per service instance
SCRAPED_METRICS = (
    "http_server_request_duration_seconds_count",
    "traces_span_metrics_duration_seconds_count",
)

# Grafana's template variables: $name, ${name}, ${name.field.path}, ${name:format}
_VARIABLE = re.compile(r"\$\{(\w+)(?:\.([^:}]+))?(?::[^}]*)?\}|\$(\w+)")
_SELECTOR = re.compile(r"^\s*\{(?P<matchers>[^}]*)\}(?P<pipeline>.*)$", re.S)
_MATCHER = re.compile(r'\s*([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_LABEL_FILTER = re.compile(r'\|\s*([A-Za-z_]\w*)\s*=\s*"((?:[^"\\]|\\.)*)"')


@dataclass
class Span:
    """One row of Grafana's trace frame (TransformTraceResponse)."""

    trace_id: str
    span_id: str
    name: str
    service_name: str
    service_tags: list[dict[str, Any]]
    tags: list[dict[str, Any]]
    start_ms: float
    duration_ms: float


def _jaeger_links() -> dict[str, Any]:
    (jaeger,) = [ds for ds in provisioned_datasources().values() if ds["type"] == "jaeger"]
    return jaeger["jsonData"]


def _loki_index_labels() -> set[str]:
    extra: list[str] = []
    otlp = yaml.safe_load(LOKI_CONFIG.read_text())["limits_config"].get("otlp_config") or {}
    for rule in (otlp.get("resource_attributes") or {}).get("attributes_config") or []:
        if rule.get("action") == "index_label":
            extra.extend(rule.get("attributes") or [])
    return {name.replace(".", "_") for name in (*LOKI_DEFAULT_INDEXED, *extra)}


def _grafana_trace(e2e: E2EStack, trace_id: str) -> list[Span]:
    """The trace as Grafana's Jaeger datasource reads it: /api/traces/<id>, data[0]."""
    response = httpx.get(f"{e2e.jaeger_url}/api/traces/{trace_id}", timeout=5)
    response.raise_for_status()
    trace = response.json()["data"][0]
    processes = trace["processes"]
    return [
        Span(
            trace_id=span["traceID"],
            span_id=span["spanID"],
            name=span["operationName"],
            service_name=processes[span["processID"]]["serviceName"],
            service_tags=processes[span["processID"]]["tags"],
            tags=span["tags"],
            start_ms=span["startTime"] / 1000,
            duration_ms=span["duration"] / 1000,
        )
        for span in trace["spans"]
    ]


def _attribute_tags(span: Span) -> list[tuple[str, Any]]:
    """The process tags, then the span tags (later ones win in ``__span.tags``)."""
    return [(t["key"], t["value"]) for t in (*span.service_tags, *span.tags)]


def _span_tags(span: Span) -> list[tuple[str, Any]]:
    """getSpanTags: process tags, span tags, then the span's own fields."""
    return [
        *_attribute_tags(span),
        ("spanId", span.span_id),
        ("traceId", span.trace_id),
        ("name", span.name),
        ("duration", span.duration_ms),
    ]


def _formatted_tags(span: Span, configured: list[dict[str, str]]) -> str:
    """getFormattedTags: configured tags present on the span, as `label="value"`, joined."""
    out = []
    for key, value in _span_tags(span):
        mapping = next((c for c in configured if c["key"] == key), None)
        if mapping is not None:
            out.append(f'{mapping.get("value") or key}="{value}"')
    return ", ".join(out)


def _scoped_vars(span: Span, spans: list[Span], tags: str) -> dict[str, Any]:
    root = min(spans, key=lambda s: s.start_ms)
    end = max(s.start_ms + s.duration_ms for s in spans)
    return {
        "__tags": tags,
        "__trace": {
            "traceId": span.trace_id,
            "name": f"{root.service_name}: {root.name}",
            "duration": end - root.start_ms,
        },
        "__span": {
            "spanId": span.span_id,
            "traceId": span.trace_id,
            "name": span.name,
            "duration": span.duration_ms,
            "tags": dict(_attribute_tags(span)),
        },
    }


def _interpolate(template: str, scoped: dict[str, Any]) -> str:
    """Grafana's template replacement for scoped variables; an undefined one is an error
    (Grafana would not show the link at all)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        assert name in scoped, f"{template!r}: variable {name!r} is undefined, no link"
        current: Any = scoped[name]
        for part in match.group(2).split(".") if match.group(2) else []:
            assert isinstance(current, dict) and part in current, (
                f"{template!r}: ${{{name}.{match.group(2)}}} is undefined, no link"
            )
            current = current[part]
        return str(current)

    return _VARIABLE.sub(value, template)


def _time_range(span: Span, start_shift: str, end_shift: str) -> tuple[float, float]:
    """getTimeRangeFromSpan: span start + start shift .. span end + end shift (seconds)."""
    start = (span.start_ms + _shift_ms(start_shift)) / 1000
    end = (span.start_ms + span.duration_ms + _shift_ms(end_shift)) / 1000
    return start, end


def _shift_ms(shift: str) -> float:
    match = re.fullmatch(r"(-?)(\d+)(ms|s|m|h)", shift)
    assert match, f"unsupported time shift {shift!r}"
    factor = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}[match.group(3)]
    return (-1 if match.group(1) else 1) * int(match.group(2)) * factor


def _finite_points(e2e: E2EStack, promql: str, start: float, end: float) -> int:
    response = httpx.get(
        f"{e2e.prom_url}/api/v1/query_range",
        params={"query": promql, "start": start, "end": end, "step": QUERY_STEP_S},
        timeout=10,
    )
    assert response.status_code == 200, f"{promql}\n{response.text[:300]}"
    return sum(
        1
        for series in response.json()["data"]["result"]
        for _, v in series["values"]
        if math.isfinite(float(v))
    )


def _parse_logql(logql: str) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(stream matchers, `| label="value"` filters) of a LogQL log query."""
    match = _SELECTOR.match(logql)
    assert match, f"no stream selector in {logql!r}"
    text = match.group("matchers")
    matchers = []
    pos = 0
    while pos < len(text.strip()):
        m = _MATCHER.match(text, pos)
        assert m, f"cannot parse the stream selector of {logql!r} at {text[pos:]!r}"
        matchers.append(m.groups())
        pos = m.end()
    return matchers, _LABEL_FILTER.findall(match.group("pipeline"))


def _record_labels(resource: dict[str, Any], index_labels: set[str]) -> dict[str, str]:
    """Loki's index labels of an OTLP log record (resource attributes, dots -> underscores)."""
    labels = {key.replace(".", "_"): str(value) for key, value in resource.items()}
    return {k: v for k, v in labels.items() if k in index_labels}


def _metadata(record: dict[str, Any]) -> dict[str, str]:
    """Structured metadata Loki keeps for an OTLP log record: trace and span id (hex)."""
    return {"trace_id": record.get("traceId", ""), "span_id": record.get("spanId", "")}


def _wait_for_spans(e2e: E2EStack, trace_id: str, services: set[str]) -> list[Span]:
    found: list[list[Span]] = [[]]

    def complete() -> bool:
        found[0] = _grafana_trace(e2e, trace_id)
        return {s.service_name for s in found[0]} >= services

    poll_until(complete, DATA_DEADLINE_S, poll_s=0.5)
    spans = found[0]
    assert {s.service_name for s in spans} >= services, [s.name for s in spans]
    return spans


def _warm_up(e2e: E2EStack, url: str, status: int, services: set[str], min_spans: int) -> None:
    """One request, then wait until Prometheus has scraped its series.

    A counter series first scraped at 1 never shows an increase, so a service instance's
    first request leaves every rate at 0 (a ratio of rates at 0/0, a quantile NaN). The
    request the links are built from must come after a scrape of the series it counts in.
    """
    first = send(url)
    assert first.response.status_code == status, first.response.text
    wait_for_trace(e2e, first.trace_id, min_spans=min_spans)
    instances = {
        t["value"]
        for span in _wait_for_spans(e2e, first.trace_id, services)
        for t in span.service_tags
        if t["key"] == "service.instance.id"
    }
    assert instances, "no service.instance.id in the process tags"
    for instance in instances:
        for metric in SCRAPED_METRICS:
            wait_for_series(e2e, f'{metric}{{service_instance_id="{instance}"}}', DATA_DEADLINE_S)


@pytest.mark.parametrize(
    ("gateway", "status", "services", "min_spans"),
    [
        # the slow pair: kept by tail sampling (latency), spans of both services
        ("slow_gateway_url", 200, {"gateway", "model-service"}, 4),
        # the gateway whose model is a closed port: kept (error), gateway spans only
        ("dead_gateway_url", 503, {"gateway"}, 1),
    ],
    ids=["slow", "error"],
)
def test_trace_links_run_and_find_data(
    e2e: E2EStack, gateway: str, status: int, services: set[str], min_spans: int
) -> None:
    url = getattr(e2e, gateway)
    _warm_up(e2e, url, status, services, min_spans)
    sent = send(url)
    assert sent.response.status_code == status, sent.response.text
    wait_for_trace(e2e, sent.trace_id, min_spans=min_spans)
    spans = _wait_for_spans(e2e, sent.trace_id, services)
    config = _jaeger_links()
    logs_cfg, metrics_cfg = config["tracesToLogsV2"], config["tracesToMetrics"]
    assert logs_cfg.get("customQuery"), "this test follows Grafana's custom-query path"
    index_labels = _loki_index_labels()

    # --- trace -> logs: every span's query is a valid LogQL query on indexed labels
    log_queries: dict[str, str] = {}
    for span in spans:
        tags = _formatted_tags(span, logs_cfg["tags"])
        assert tags, f"{span.service_name}/{span.name}: no configured tag on the span"
        scoped = _scoped_vars(span, spans, tags)
        logql = _interpolate(unescape(logs_cfg["query"]), scoped)
        matchers, _ = _parse_logql(logql)
        assert matchers, f"{span.service_name}/{span.name}: empty stream selector in {logql!r}"
        for label, op, value in matchers:
            assert label in index_labels, (
                f"{span.service_name}/{span.name}: {label} is not a Loki index label: {logql!r}"
            )
            assert op == "=" and value, f"{span.service_name}/{span.name}: {logql!r}"
        assert sent.trace_id in logql, logql
        log_queries[span.span_id] = logql

    # ... and together they reach every log line of the trace the collector exported (what
    # Loki would store): each span's selector picks its service instance's stream.
    seen: list[Any] = [[]]

    def of_sent_trace() -> list[Any]:
        seen[0] = _log_records(e2e)
        return [(res, rec) for res, rec in seen[0] if rec.get("traceId") == sent.trace_id]

    of_trace = poll_until(of_sent_trace, DATA_DEADLINE_S, poll_s=0.5)
    records = seen[0]
    assert of_trace, f"no log record of trace {sent.trace_id} reached the collector"
    reached: set[int] = set()
    for span in spans:
        matchers, filters = _parse_logql(log_queries[span.span_id])
        stream = {label: value for label, _, value in matchers}
        in_stream = [
            i
            for i, (res, _) in enumerate(records)
            if stream.items() <= _record_labels(res, index_labels).items()
        ]
        assert in_stream, (
            f"{span.service_name}/{span.name}: no log stream matches {log_queries[span.span_id]!r}"
        )
        reached.update(
            i for i in in_stream if set(filters) <= set(_metadata(records[i][1]).items())
        )
    unreached = [rec for i, (_, rec) in enumerate(records) if rec.get("traceId") == sent.trace_id
                 and i not in reached]  # fmt: skip
    assert not unreached, f"log lines of the trace no span link finds: {unreached[:3]}"

    # --- trace -> metrics: every query of every span answers with data from Prometheus
    for span in spans:
        tags = _formatted_tags(span, metrics_cfg["tags"])
        assert tags, f"{span.service_name}/{span.name}: no configured tag on the span"
        scoped = _scoped_vars(span, spans, tags)
        start, end = _time_range(
            span, metrics_cfg["spanStartTimeShift"], metrics_cfg["spanEndTimeShift"]
        )
        for q in metrics_cfg["queries"]:
            promql = _interpolate(unescape(q["query"]), scoped)
            points = poll_until(
                lambda q=promql, a=start, b=end: _finite_points(e2e, q, a, min(b, time.time())),
                DATA_DEADLINE_S,
                poll_s=2,
            )
            assert points, (
                f"{span.service_name}/{span.name}, {q['name']}: no data in "
                f"[{start:.0f}, {end:.0f}] for\n{promql}"
            )
