"""The exemplar filter keeps exactly the traces the collector's tail sampler keeps: the same
hash decisions as the real processor (vectors from tests/vectors/), the same policy
parameters as otel-collector/config.yaml, and only such traces reach the exemplars."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from deploy.native import REPO
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from modelobs.settings import Settings
from modelobs.telemetry.exemplars import (
    MAX_UINT64,
    TailSamplingExemplarFilter,
    TailSamplingPolicy,
    exemplar_filter,
    fnv1a64,
    probabilistic_threshold,
)

from .sampled_trace_ids import trace_ids

VECTORS = REPO / "tests" / "vectors" / "tail_sampling_decisions.json"
# Written by tests/vectors/tail_sampling/generate.sh from the real processor.
VECTORS_DOC = json.loads(VECTORS.read_text())
COLLECTOR_CONFIG = REPO / "otel-collector" / "config.yaml"
POLICY = TailSamplingPolicy(percent=10, latency_ms=200, hash_salt="modelobs")
NOW_NS = 1_700_000_000_000_000_000


# --------------------------------------------------------------------------- hash and threshold


def test_fnv1a64_known_values() -> None:
    # Published FNV-1a 64 test values (the empty string is the offset basis).
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a64(b"foobar") == 0x85944171F73967E8
    assert fnv1a64(b"bar", fnv1a64(b"foo")) == fnv1a64(b"foobar")


@pytest.mark.parametrize(("percent", "expected"), sorted(VECTORS_DOC["thresholds"].items()))
def test_threshold_is_gos_big_float_product(percent: str, expected: int) -> None:
    # A float product would be 1 too high for most of these (e.g. 10 %).
    assert probabilistic_threshold(float(percent)) == expected


def test_threshold_saturates_like_the_processor() -> None:
    assert probabilistic_threshold(150) == MAX_UINT64
    assert probabilistic_threshold(-5) == 0


@pytest.mark.parametrize(
    "case",
    VECTORS_DOC["cases"],
    ids=lambda c: f"{c['hash_salt']!r}-{c['sampling_percentage']}",
)
def test_same_decisions_as_the_collectors_tail_sampling_processor(case: dict) -> None:
    policy = TailSamplingPolicy(percent=case["sampling_percentage"], hash_salt=case["hash_salt"])
    kept = sorted(t for t in case["trace_ids"] if policy.keeps_trace_id(int(t, 16)))
    assert kept == case["kept"]


def test_vectors_come_from_the_pinned_processor_release() -> None:
    release = VECTORS_DOC["processor"].split()[-1]
    manifest = (REPO / "otel-collector" / "manifest.yaml").read_text()
    assert f"tailsamplingprocessor {release}" in manifest, (
        "the collector's release changed: rerun tests/vectors/tail_sampling/generate.sh"
    )


# --------------------------------------------------------------------------- the collector's policy


def env_default(value: object) -> str:
    match = re.fullmatch(r"\$\{env:(\w+):-([^}]*)\}", str(value))
    assert match, f"expected ${{env:NAME:-default}}, found {value!r}"
    return match.group(2)


def test_settings_read_the_collectors_policy_with_its_defaults() -> None:
    tail = yaml.safe_load(COLLECTOR_CONFIG.read_text())["processors"]["tail_sampling"]
    policies = {p["type"]: p for p in tail["policies"]}
    # The filter reasons about exactly these OR-ed policies; a composite, rate-limiting or
    # drop policy could drop a trace it counts as kept.
    assert [p["type"] for p in tail["policies"]] == ["status_code", "latency", "probabilistic"]
    assert policies["status_code"]["status_code"]["status_codes"] == ["ERROR"]
    latency = policies["latency"]["latency"]
    probabilistic = policies["probabilistic"]["probabilistic"]
    assert set(latency) == {"threshold_ms"}, "an upper threshold breaks the latency rule"
    assert "TAIL_SAMPLING_LATENCY_MS" in latency["threshold_ms"]
    assert "TAIL_SAMPLING_PERCENT" in probabilistic["sampling_percentage"]
    assert "TAIL_SAMPLING_HASH_SALT" in probabilistic["hash_salt"]

    defaults = Settings()
    assert defaults.tail_sampling_latency_ms == int(env_default(latency["threshold_ms"]))
    assert defaults.tail_sampling_percent == float(
        env_default(probabilistic["sampling_percentage"])
    )
    assert defaults.tail_sampling_hash_salt == env_default(probabilistic["hash_salt"])


def test_settings_take_the_collectors_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAIL_SAMPLING_PERCENT", "2.5")
    monkeypatch.setenv("TAIL_SAMPLING_LATENCY_MS", "250")
    monkeypatch.setenv("TAIL_SAMPLING_HASH_SALT", "other")
    policy = TailSamplingPolicy.from_settings(Settings())
    assert policy == TailSamplingPolicy(percent=2.5, latency_ms=250, hash_salt="other")


def test_an_empty_salt_is_the_processors_default() -> None:
    ids = trace_ids(TailSamplingPolicy(hash_salt="default-hash-seed"), kept=True, count=5)
    assert all(TailSamplingPolicy(hash_salt="").keeps_trace_id(t) for t in ids)


# --------------------------------------------------------------------------- the filter


def span_at(trace_id: int, sampled: bool = True) -> NonRecordingSpan:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return NonRecordingSpan(SpanContext(trace_id, 0x1234, is_remote=False, trace_flags=flags))


def offered(span: trace.Span, now_ns: int = NOW_NS) -> bool:
    return TailSamplingExemplarFilter(POLICY).should_sample(
        0.1, now_ns, {}, trace.set_span_in_context(span)
    )


def test_filter_follows_the_probabilistic_decision() -> None:
    (kept,) = trace_ids(POLICY, kept=True)
    (dropped,) = trace_ids(POLICY, kept=False)
    assert offered(span_at(kept))
    assert not offered(span_at(dropped))
    assert not offered(span_at(kept, sampled=False)), "an unsampled span is never exported"
    assert not offered(trace.INVALID_SPAN)


def test_filter_offers_error_and_long_spans_of_any_trace() -> None:
    tracer = TracerProvider().get_tracer("test")
    (dropped,) = trace_ids(POLICY, kept=False)
    parent = trace.set_span_in_context(span_at(dropped))
    start = NOW_NS - 300_000_000  # 300 ms ago

    with tracer.start_as_current_span("fast", context=parent, start_time=NOW_NS - 10**6) as fast:
        assert not offered(fast)
        fast.set_status(Status(StatusCode.ERROR))
        assert offered(fast), "status_code policy keeps a trace with an ERROR span"

    running = tracer.start_span("slow", context=parent, start_time=start)
    assert offered(running), "300 ms > the 200 ms latency threshold"
    assert not offered(running, now_ns=start + 200_999_999), "200 ms is not > 200 ms"
    running.end(end_time=start + 150_000_000)
    assert not offered(running), "an ended span counts until its end"


def test_exemplars_name_only_kept_traces() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader], exemplar_filter=TailSamplingExemplarFilter(POLICY)
    )
    histogram = provider.get_meter("test").create_histogram("duration", unit="s")
    tracer = TracerProvider().get_tracer("test")
    kept, dropped = trace_ids(POLICY, kept=True, count=3), trace_ids(POLICY, kept=False, count=3)
    for trace_id in kept + dropped:
        with tracer.start_as_current_span(
            "request", context=trace.set_span_in_context(span_at(trace_id))
        ):
            histogram.record(0.01, {"bucket": str(trace_id)})  # one series each: no overwriting

    data = reader.get_metrics_data()
    (point_list,) = [
        m.data.data_points
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    ]
    exemplar_traces = {e.trace_id for p in point_list for e in p.exemplars}
    assert exemplar_traces == set(kept)


def test_standard_variable_selects_the_sdk_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_METRICS_EXEMPLAR_FILTER", raising=False)
    assert isinstance(exemplar_filter(Settings()), TailSamplingExemplarFilter)
    monkeypatch.setenv("OTEL_METRICS_EXEMPLAR_FILTER", "trace_based")
    assert exemplar_filter(Settings()) is None
