"""Light spans (telemetry/light_spans.py) export what the SDK's spans export: the same
operations through an SDK tracer provider and through the light wrapper of an identically
configured one give equal spans in memory and equal bytes from both OTLP encoders; samplers,
span limits, processors and the SDK switch are honoured; nothing changes after end."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.span import TraceFlags, TraceState

from modelobs.telemetry import build_telemetry
from modelobs.telemetry.light_spans import LightSpan, LightTracer, LightTracerProvider
from modelobs.telemetry.otlp_encoding import encode_spans_bytes

RESOURCE = Resource.create({"service.name": "light", "service.version": "1"})
T0 = 1_700_000_000_000_000_000
REMOTE_SAMPLED = SpanContext(
    trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
    span_id=0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID),
    trace_state=TraceState([("vendor", "v1")]),
)
REMOTE_UNSAMPLED = SpanContext(
    trace_id=0x5BF92F3577B34DA6A3CE929D0E0E4736,
    span_id=0x10F067AA0BA902B7,
    is_remote=True,
    trace_flags=TraceFlags(0),
)


class Unprintable:
    """A value the SDK can only replace with None (no __str__ nor __repr__ of its own)."""

    __str__ = object.__str__
    __repr__ = object.__repr__


class Printable:
    def __str__(self) -> str:
        return "printable"


class SeededIds(IdGenerator):
    """The same ids, in the same order, for both providers of a pair."""

    def __init__(self, seed: int = 14) -> None:
        self._random = random.Random(seed)

    def generate_trace_id(self) -> int:
        return self._random.getrandbits(128) or 1

    def generate_span_id(self) -> int:
        return self._random.getrandbits(64) or 1

    def is_trace_id_random(self) -> bool:
        return True


Pair = tuple[TracerProvider, InMemorySpanExporter]


def sdk_and_light(
    sampler: Sampler | None = None,
    limits: SpanLimits | None = None,
    meter_providers: tuple[MeterProvider, MeterProvider] | tuple[None, None] = (None, None),
) -> tuple[Pair, Pair]:
    """Two identically configured SDK providers; the second handed out light."""
    pairs = []
    for meter_provider in meter_providers:
        exporter = InMemorySpanExporter()
        provider = TracerProvider(
            sampler=sampler,
            resource=RESOURCE,
            id_generator=SeededIds(),
            span_limits=limits,
            shutdown_on_exit=False,
            meter_provider=meter_provider,
        )
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        pairs.append((provider, exporter))
    (sdk, sdk_out), (wrapped, light_out) = pairs
    return (sdk, sdk_out), (LightTracerProvider(wrapped), light_out)  # type: ignore[return-value]


def span_view(span: ReadableSpan) -> dict[str, Any]:
    """Everything an exporter reads from a span."""
    return {
        "name": span.name,
        "kind": span.kind,
        "context": span.context,
        "parent": span.parent,
        "status": (span.status.status_code, span.status.description),
        "attributes": list(span.attributes.items()),
        "dropped": (span.dropped_attributes, span.dropped_events, span.dropped_links),
        "events": [
            (e.name, e.timestamp, list((e.attributes or {}).items()), e.dropped_attributes)
            for e in span.events
        ],
        "links": [
            (link.context, list((link.attributes or {}).items()), link.dropped_attributes)
            for link in span.links
        ],
        "times": (span.start_time, span.end_time),
        "resource": span.resource.attributes,
        "scope": span.instrumentation_scope,
    }


def operations(provider: trace.TracerProvider) -> None:
    """Every trace.Span operation the services and instrumentations use, and misuse."""
    tracer = provider.get_tracer("modelobs", "1.0", schema_url="https://example.com/s")
    remote = trace.set_span_in_context(NonRecordingSpan(REMOTE_SAMPLED))
    server = tracer.start_span(
        "POST",
        remote,
        SpanKind.SERVER,
        {
            "url.path": "/predict",
            "server.port": 8000,
            "ratio": 0.5,
            "flag": True,
            "raw": b"\x00\x01",
            "none": None,
            "list": ["a", "b"],
            "long": "x" * 40,
            "": "empty key",
            "object": Printable(),
            "unprintable": Unprintable(),
        },
        links=[Link(REMOTE_UNSAMPLED, {"link": "at start"}), Link(trace.INVALID_SPAN_CONTEXT)],
        start_time=T0,
    )
    token = otel_context.attach(trace.set_span_in_context(server, remote))
    server.set_attribute("http.route", "/predict")
    server.set_attribute("url.path", "/predict/again")  # rewritten: moves last
    server.set_attribute("", "dropped")
    server.set_attribute("nested", ["a", ("b",)])
    server.set_attributes({"a": 1, "b": "two", 3: "int key", "c": [1.5, 2.5]})
    server.update_name("POST /predict")
    server.add_event("plain", timestamp=T0 + 1)
    server.add_event("with attributes", {"k": "v", "n": 3, "long": "y" * 40}, T0 + 2)
    server.add_link(REMOTE_UNSAMPLED, {"later": True})
    server.add_link(trace.INVALID_SPAN_CONTEXT)  # invalid and bare: not kept
    try:
        raise ValueError("caught here")
    except ValueError as exc:
        server.record_exception(exc, {"extra": 1}, timestamp=T0 + 3)
    with tracer.start_as_current_span(
        "model inference", attributes={"model.name": "iris"}, start_time=T0 + 4, end_on_exit=False
    ) as child:
        child.set_attribute("modelobs.batch.size", 1)
        child.set_status(StatusCode.OK)
        child.set_status(Status(StatusCode.ERROR, "after OK: ignored"))
    child.end(T0 + 5)
    other = provider.get_tracer("other")
    client = other.start_span("GET", kind=SpanKind.CLIENT, start_time=T0 + 5)
    client.set_status(Status(StatusCode.ERROR, "upstream failed"))
    client.set_status(StatusCode.UNSET)  # ignored
    client.end(T0 + 6)
    client.set_attribute("after", "end")
    client.add_event("after end")
    client.set_status(StatusCode.OK)
    client.update_name("renamed after end")
    client.end(T0 + 7)  # a second end: ignored
    server.set_status(Status(StatusCode.ERROR), "description with a Status: ignored")
    otel_context.detach(token)
    server.end(T0 + 8)


def both_ways(
    scenario: Callable[[trace.TracerProvider], None],
    sampler: Sampler | None = None,
    limits: SpanLimits | None = None,
) -> tuple[list[ReadableSpan], list[ReadableSpan]]:
    (sdk, sdk_out), (light, light_out) = sdk_and_light(sampler, limits)
    scenario(sdk)
    scenario(light)
    return list(sdk_out.get_finished_spans()), list(light_out.get_finished_spans())


TIGHT = SpanLimits(
    max_span_attributes=4,
    max_span_attribute_length=5,
    max_attribute_length=3,
    max_events=2,
    max_links=1,
    max_event_attributes=2,
    max_link_attributes=1,
)


@pytest.mark.parametrize("limits", [None, TIGHT], ids=["default limits", "tight limits"])
def test_same_operations_export_equal_spans(limits: SpanLimits | None) -> None:
    sdk_spans, light_spans = both_ways(operations, limits=limits)
    assert len(sdk_spans) == 3
    assert all(isinstance(s, LightSpan) for s in light_spans)
    assert [span_view(s) for s in light_spans] == [span_view(s) for s in sdk_spans]
    # Both encoders, byte for byte (ids and times are the same by construction).
    assert encode_spans(light_spans).SerializeToString(deterministic=True) == encode_spans(
        sdk_spans
    ).SerializeToString(deterministic=True)
    assert encode_spans_bytes(light_spans) == encode_spans_bytes(sdk_spans)
    server = light_spans[-1]
    if limits is None:
        assert server.attributes["object"] == "printable"
        assert server.attributes["unprintable"] is None
        assert server.attributes["list"] == ("a", "b")
        assert list(server.attributes)[-1] == "c"
        assert server.dropped_attributes == 2  # the two empty keys
    else:
        assert len(server.attributes) == 4 and server.dropped_attributes > 0
        assert server.dropped_events == 1 and server.dropped_links == 1
        assert all(len(v) <= 5 for v in server.attributes.values() if isinstance(v, str))


def test_writes_after_end_are_ignored_with_the_sdks_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    (_, _), (light, out) = sdk_and_light()
    span = light.get_tracer("t").start_span("ended")
    span.end()
    with caplog.at_level(logging.WARNING):
        span.set_attribute("k", "v")
        span.set_attributes({"k": "v"})
        span.add_event("e")
        span.add_link(REMOTE_SAMPLED)
        span.set_status(StatusCode.ERROR)
        span.update_name("other")
        span.end()
    (exported,) = out.get_finished_spans()
    assert exported.name == "ended" and not exported.attributes and not exported.events
    assert not exported.links and exported.status.status_code is StatusCode.UNSET
    assert not span.is_recording()
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("Setting attribute on ended span.") == 2
    assert "Calling end() on an ended span." in messages
    assert "Tried calling _add_event on an ended span." in messages


def raising_in_spans(provider: trace.TracerProvider) -> None:
    tracer = provider.get_tracer("t")
    with pytest.raises(ValueError), tracer.start_as_current_span("current", start_time=T0):
        raise ValueError("in start_as_current_span")
    with pytest.raises(KeyError), tracer.start_span("plain", start_time=T0) as span:
        assert span.is_recording()
        raise KeyError("in start_span's with")
    quiet = tracer.start_as_current_span(
        "quiet", start_time=T0, record_exception=False, set_status_on_exception=False
    )
    with pytest.raises(RuntimeError), quiet:
        raise RuntimeError("not recorded")


def test_exceptions_in_context_managers_as_the_sdk_records_them() -> None:
    sdk_spans, light_spans = both_ways(raising_in_spans)

    def without_stacktrace(span: ReadableSpan) -> dict[str, Any]:
        view = span_view(span)
        view["times"] = view["times"][0]  # the end time is now
        view["events"] = [
            (name, [(k, v) for k, v in attributes if k != "exception.stacktrace"])
            for name, _, attributes, _ in view["events"]
        ]
        return view

    assert [without_stacktrace(s) for s in light_spans] == [
        without_stacktrace(s) for s in sdk_spans
    ]
    current, plain, quiet = light_spans
    assert current.status.description == "ValueError: in start_as_current_span"
    assert current.events[0].attributes["exception.escaped"] == "False"  # as use_span
    assert plain.events[0].attributes["exception.escaped"] == "True"  # as Span.__exit__
    assert plain.events[0].attributes["exception.type"] == "KeyError"
    assert not quiet.events and quiet.status.status_code is StatusCode.UNSET
    # Our traceback starts at the with block (no generator frames of the SDK's manager).
    for ours, theirs in zip(light_spans[:2], sdk_spans[:2], strict=True):
        stack = ours.events[0].attributes["exception.stacktrace"]
        assert stack.startswith("Traceback (most recent call last):")
        assert (
            stack.splitlines()[-1]
            == theirs.events[0].attributes["exception.stacktrace"].splitlines()[-1]
        )
        assert "raising_in_spans" in stack


def test_start_as_current_span_decorates_sync_and_async_functions() -> None:
    (_, _), (light, out) = sdk_and_light()
    tracer = light.get_tracer("t")

    @tracer.start_as_current_span("sync")
    def work() -> int:
        return trace.get_current_span().get_span_context().span_id

    @tracer.start_as_current_span("async")
    async def awork() -> int:
        await asyncio.sleep(0)  # suspends once: the span stays current across an await
        return trace.get_current_span().get_span_context().span_id

    ids = [work(), work(), asyncio.run(awork())]
    spans = out.get_finished_spans()
    assert [s.name for s in spans] == ["sync", "sync", "async"]
    assert ids == [s.context.span_id for s in spans]  # a span per call, current inside
    assert trace.get_current_span() is trace.INVALID_SPAN


def starts(provider: trace.TracerProvider) -> list[tuple[bool, Any]]:
    """Roots and children of sampled and unsampled, remote and local parents."""
    tracer = provider.get_tracer("t")
    seen = []
    for _ in range(20):
        root = tracer.start_span("root", attributes={"k": "v"}, start_time=T0)
        seen.append(root)
        seen.append(tracer.start_span("child", trace.set_span_in_context(root), start_time=T0))
    for parent in (REMOTE_SAMPLED, REMOTE_UNSAMPLED):
        remote = trace.set_span_in_context(NonRecordingSpan(parent))
        seen.append(tracer.start_span("remote child", remote, start_time=T0))
        local = trace.set_span_in_context(seen[-1])
        seen.append(tracer.start_span("local child", local, start_time=T0))
    for span in seen:
        span.end(T0 + 1)
    return [(s.is_recording() or isinstance(s, ReadableSpan), s.get_span_context()) for s in seen]


class AddsAttributes(Sampler):
    """A custom sampler: samples every other trace id and adds an attribute."""

    def __init__(self) -> None:
        self.calls = 0

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None):  # type: ignore[no-untyped-def]
        self.calls += 1
        decision = Decision.RECORD_AND_SAMPLE if trace_id % 2 else Decision.RECORD_ONLY
        return SamplingResult(decision, {**(attributes or {}), "sampler.added": True})

    def get_description(self) -> str:
        return "AddsAttributes"


@pytest.mark.parametrize(
    "sampler",
    [
        DEFAULT_ON,
        ALWAYS_ON,
        ALWAYS_OFF,
        TraceIdRatioBased(0.5),
        ParentBasedTraceIdRatio(0.5),
        ParentBased(ALWAYS_OFF),
        ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON),
        AddsAttributes(),
    ],
    ids=lambda s: s.get_description()[:40],
)
def test_sampler_decides_as_on_the_sdk(sampler: Sampler) -> None:
    (sdk, sdk_out), (light, light_out) = sdk_and_light(sampler)
    sdk_starts, light_starts = starts(sdk), starts(light)
    assert light_starts == sdk_starts  # recording or not, ids, flags, trace state
    sdk_spans, light_spans = sdk_out.get_finished_spans(), light_out.get_finished_spans()
    assert [span_view(s) for s in light_spans] == [span_view(s) for s in sdk_spans]
    recorded = sum(1 for recording, _ in light_starts if recording)
    if sampler is ALWAYS_OFF:
        assert recorded == 0 and not light_spans
    elif sampler in (DEFAULT_ON, ALWAYS_ON):
        assert len(light_spans) >= 42
    if isinstance(sampler, AddsAttributes):
        assert all(s.attributes["sampler.added"] for s in light_spans)
        assert len(light_spans) < recorded  # RECORD_ONLY: recording, not exported


def test_telemetry_hands_out_light_spans_with_the_environments_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.5")
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "2")
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "3")
    out = InMemorySpanExporter()
    telemetry = build_telemetry("light-env", span_exporter=out)
    try:
        provider = telemetry.tracer_provider
        assert isinstance(provider, LightTracerProvider)
        assert isinstance(telemetry.tracer, LightTracer)
        assert isinstance(provider.sampler, TraceIdRatioBased) and provider.sampler.rate == 0.5
        marked = baggage.set_baggage("synthetic_request", "true")
        spans = [
            telemetry.tracer.start_span("s", marked, attributes={"a": "long", "b": 1, "c": 2})
            for _ in range(40)
        ]
        for span in spans:
            span.end()
        telemetry.tracer_provider.force_flush()
        exported = out.get_finished_spans()
        assert 0 < len(exported) < 40  # the ratio sampler decided
        for span in exported:
            # The synthetic processor's on_start added its attribute; the count limit
            # pushed the oldest out and the length limit cut the value.
            assert dict(span.attributes) == {"c": 2, "synthetic_request": "tru"}
            assert span.dropped_attributes == 2
            assert span.resource is provider.resource
            assert span.instrumentation_scope.name == "modelobs"
    finally:
        telemetry.shutdown()


def test_sdk_disabled_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    telemetry = build_telemetry("light-off", span_exporter=InMemorySpanExporter())
    assert not telemetry.enabled
    assert isinstance(telemetry.tracer_provider, trace.NoOpTracerProvider)
    # A wrapper around a disabled SDK provider hands out the SDK's no-op tracer.
    wrapped = LightTracerProvider(TracerProvider(shutdown_on_exit=False))
    tracer = wrapped.get_tracer("t")
    assert isinstance(tracer, trace.NoOpTracer)
    assert not tracer.start_span("x").is_recording()


def test_provider_wrapper_delegates_to_the_sdk_provider() -> None:
    (_, _), (light, out) = sdk_and_light()
    assert isinstance(light, LightTracerProvider)
    second = InMemorySpanExporter()
    light.add_span_processor(SimpleSpanProcessor(second))  # after tracers exist, too
    tracer = light.get_tracer("t")
    assert light.get_tracer("t") is tracer
    tracer.start_span("s").end()
    assert [s.name for s in second.get_finished_spans()] == ["s"]
    assert light.force_flush()
    assert light.resource is RESOURCE
    assert isinstance(light.id_generator, SeededIds)
    assert light._span_limits.max_span_attributes == 128  # other attributes: the SDK's
    light.shutdown()
    assert out._stopped and second._stopped


def test_the_sdks_span_counters_count_light_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    """otel.sdk.span.started / .live, when the SDK's self-metrics have a meter provider."""
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    readers = (InMemoryMetricReader(), InMemoryMetricReader())
    meters = (MeterProvider([readers[0]]), MeterProvider([readers[1]]))
    (sdk, _), (light, _) = sdk_and_light(DEFAULT_ON, meter_providers=meters)
    open_spans = [starts(sdk), starts(light)]  # ends them all
    assert open_spans[0] == open_spans[1]
    live = sdk.get_tracer("t").start_span("still open")
    light.get_tracer("t").start_span("still open")

    def counted(reader: InMemoryMetricReader) -> dict[tuple[str, frozenset], int]:
        found = {}
        data = reader.get_metrics_data()
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for point in metric.data.data_points:
                        key = (metric.name, frozenset(point.attributes.items()))
                        found[key] = point.value
        return found

    sdk_counts, light_counts = counted(readers[0]), counted(readers[1])
    assert light_counts == sdk_counts
    assert sum(v for (name, _), v in light_counts.items() if name == "otel.sdk.span.live") == 1
    assert sum(v for (name, _), v in light_counts.items() if name == "otel.sdk.span.started") > 40
    live.end()
