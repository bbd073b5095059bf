"""Bound recordings (telemetry/bound_instruments.py) export exactly what plain SDK recordings
export: the same measurements through both, into two providers, give equal metrics data
under every reader, temporality, view and limit the services meet; and the private SDK
internals they read are pinned so an SDK upgrade fails here instead of silently slowing."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
    _Gauge,
)
from opentelemetry.sdk.metrics._internal import _MeterConfig
from opentelemetry.sdk.metrics._internal.exemplar import exemplar_reservoir
from opentelemetry.sdk.metrics._internal.measurement_consumer import (
    SynchronousMeasurementConsumer,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import DropAggregation, View
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.version import __version__ as sdk_version
from opentelemetry.trace import Status, StatusCode

from modelobs.telemetry.bound_instruments import (
    PINNED_SDK_VERSION,
    BoundAttributeSets,
    BoundInstrument,
    bind,
)
from modelobs.telemetry.exemplars import TailSamplingExemplarFilter, TailSamplingPolicy
from modelobs.telemetry.http_views import unused_http_instrument_views
from modelobs.telemetry.providers import SDK_SELF_METRICS

DELTA = {
    kind: AggregationTemporality.DELTA
    for kind in (
        Counter,
        UpDownCounter,
        Histogram,
        _Gauge,
        ObservableCounter,
        ObservableUpDownCounter,
        ObservableGauge,
    )
}
# Half the traces kept by the hash, errors kept, no latency decision (timing-free).
POLICY = TailSamplingPolicy(percent=50, latency_ms=10**9, hash_salt="bound")
LIMIT = 4  # distinct attribute sets per stream before the overflow set
ATTRIBUTE_SETS: list[dict[str, Any]] = [
    {"model.name": "iris", "prediction.class": f"class-{i}", "synthetic_request": "false"}
    for i in range(LIMIT + 2)  # two past the limit
] + [{"model.name": "iris", "tags": ["a", "b"]}]  # a sequence value, cleaned to a tuple
HTTP_NAMES = ("http.request.method", "http.route", "http.response.status_code")
Recorder = Callable[[Any, dict[str, Any]], Callable[[float], None]]


@pytest.fixture(autouse=True)
def _no_sdk_self_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    """Readers record their own collection time into their provider when the SDK's
    self-metrics are on (build_telemetry turns them on for the process): a timing, never
    equal between two runs, and not what is compared here."""
    monkeypatch.setenv(SDK_SELF_METRICS, "false")


def _plain(instrument: Any, attributes: dict[str, Any]) -> Callable[[float], None]:
    method = getattr(instrument, "record", None) or getattr(instrument, "add", None)
    method = method or instrument.set
    return lambda value: method(value, attributes)


def _bound(instrument: Any, attributes: dict[str, Any]) -> Callable[[float], None]:
    return bind(instrument, attributes).record


def _spans() -> list[trace.Span]:
    """Sampled spans, some of whose traces the filter keeps (hash or error status)."""
    tracer = TracerProvider().get_tracer("test")
    spans = [tracer.start_span(f"request {i}") for i in range(8)]
    spans[1].set_status(Status(StatusCode.ERROR))
    kept = [POLICY.keeps_trace_id(s.get_span_context().trace_id) for s in spans]
    assert any(kept) and not all(kept), "want traces the filter keeps and ones it does not"
    return spans


def _provider(readers: list[InMemoryMetricReader]) -> MeterProvider:
    return MeterProvider(
        metric_readers=readers,
        exemplar_filter=TailSamplingExemplarFilter(POLICY),
        shutdown_on_exit=False,
        views=[
            *unused_http_instrument_views(),
            View(instrument_name="test.dropped", aggregation=DropAggregation()),
            View(instrument_name="test.filtered", attribute_keys={"model.name"}),
            # The histogram's stream, renamed.
            View(instrument_name="test.histogram", name="test.histogram.copy"),
        ],
    )


def _reader(temporality: dict[type, AggregationTemporality] | None) -> InMemoryMetricReader:
    limits = {kind: LIMIT for kind in (Counter, UpDownCounter, Histogram, _Gauge)}
    return InMemoryMetricReader(temporality, cardinality_limits=limits)  # type: ignore[arg-type]


def _readers(temporality: str) -> list[InMemoryMetricReader]:
    """Two readers: the temporality under test, and the other one."""
    if temporality == "delta":
        return [_reader(DELTA), _reader(None)]
    return [_reader(None), _reader(DELTA)]


def _scenario(recorder: Recorder, spans: list[trace.Span], temporality: str) -> list[Any]:
    """Several collections of every instrument kind, recorded through ``recorder``: new
    attribute sets after a collection, a reader added half way, overflow past the limit.
    The counters' exemplar reservoirs draw at random: on this thread, from one seed in both
    runs (other threads, such as exporters retrying with jitter, keep the global draws)."""
    seeded, here = random.Random(14), threading.get_ident()

    def randrange(*args: int) -> int:
        return (seeded if threading.get_ident() == here else random).randrange(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exemplar_reservoir, "randrange", randrange)
        return _recorded(recorder, spans, temporality)


def _recorded(recorder: Recorder, spans: list[trace.Span], temporality: str) -> list[Any]:
    readers = _readers(temporality)
    provider = _provider(readers)
    meter = provider.get_meter("test", "1")
    instruments = [
        meter.create_histogram(
            "test.histogram", unit="s", explicit_bucket_boundaries_advisory=[0.1, 0.5, 1.0]
        ),
        meter.create_counter("test.counter"),
        meter.create_up_down_counter("test.updown"),
        meter.create_gauge("test.gauge"),
        meter.create_histogram("test.dropped"),
        meter.create_counter("test.filtered"),
    ]
    server_duration = meter.create_histogram("http.server.request.duration", unit="s")
    by_route = BoundAttributeSets(server_duration, HTTP_NAMES, max_sets=3)
    recorders: dict[tuple[int, int], Callable[[float], None]] = {}
    collected: list[Any] = []
    values = [0.05, 0.3, 0.3, 0.7, 2.0, 0.0, 1.0]
    for round_ in range(4):
        if round_ == 2:  # a reader added after recordings: a new storage
            late = _reader(DELTA if temporality == "delta" else None)
            provider.add_metric_reader(late)
            readers.append(late)
        # Rounds use more attribute sets as they go: first recordings after a collection.
        sets = ATTRIBUTE_SETS[: 2 + 2 * round_]
        for step, value in enumerate(values):
            span = spans[(round_ + step) % len(spans)]
            with trace.use_span(span):
                for i, instrument in enumerate(instruments):
                    for j, attributes in enumerate(sets):
                        key = (i, j)
                        if key not in recorders:
                            recorders[key] = recorder(instrument, attributes)
                        recorders[key](value * (j + 1))
                for status in (200, 200, 404, 500, 503, 200)[: 2 + round_]:
                    request = {
                        "http.request.method": "POST",
                        "http.route": "/predict",
                        "http.response.status_code": status,
                        "url.path": f"/predict/{step}",  # not among the names: left out
                    }
                    if recorder is _bound:
                        by_route.record(value, request)
                    else:
                        wanted = {k: request[k] for k in HTTP_NAMES}
                        server_duration.record(value, wanted)
        collected.append([_comparable(reader.get_metrics_data()) for reader in readers])
    return collected


def _comparable(data: Any) -> Any:
    """Metrics data as plain values, without the times of collection and measurement."""
    if data is None:
        return None
    out = []
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                points = [
                    {
                        **{
                            k: v
                            for k, v in vars(point).items()
                            if k not in ("start_time_unix_nano", "time_unix_nano", "exemplars")
                        },
                        "exemplars": [
                            (e.value, e.trace_id, e.span_id, e.filtered_attributes)
                            for e in point.exemplars
                        ],
                    }
                    for point in metric.data.data_points
                ]
                data_fields = {k: v for k, v in vars(metric.data).items() if k != "data_points"}
                out.append(
                    (scope_metrics.scope.name, metric.name, metric.unit, data_fields, points)
                )
    return out


@pytest.mark.parametrize("temporality", ["cumulative", "delta"])
def test_bound_recordings_export_what_plain_recordings_export(temporality: str) -> None:
    spans = _spans()
    plain = _scenario(_plain, spans, temporality)
    bound = _scenario(_bound, spans, temporality)
    assert bound == plain
    # The scenario reached what it is meant to cover, in both runs alike.
    last = plain[-1][0]
    names = {metric[1] for metric in last}
    assert "test.dropped" not in names and "test.histogram.copy" in names
    assert any(
        point["attributes"] == {"otel.metric.overflow": True}
        for metric in last
        for point in metric[4]
    ), "past the cardinality limit: an overflow point"
    exemplars = [e for metric in last for point in metric[4] for e in point["exemplars"]]
    assert exemplars and all(e[1] for e in exemplars), "exemplars naming traces"
    filtered = [m for m in last if m[1] == "test.filtered"]
    assert filtered and all(set(p["attributes"]) == {"model.name"} for p in filtered[0][4])
    assert len(plain[2]) == 3 and plain[2][2] is not None, "the reader added late collected"


def test_a_bound_recording_takes_the_pinned_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails when the installed SDK is not the one the module's internals were read from,
    or when a bound recording still goes through the SDK's per-call path."""
    assert sdk_version == PINNED_SDK_VERSION, (
        f"opentelemetry-sdk {sdk_version}: re-read its metrics internals "
        "(measurement_consumer, metric_reader_storage, _view_instrument_match, aggregation) "
        "against telemetry/bound_instruments.py, then update PINNED_SDK_VERSION"
    )
    reader = InMemoryMetricReader()
    provider = _provider([reader])
    histogram = provider.get_meter("test").create_histogram("test.histogram")
    bound = bind(histogram, {"model.name": "iris"})
    assert bound.fast
    bound.record(0.2)  # the first: the SDK matches the instrument to its views
    consumed: list[Any] = []
    original = SynchronousMeasurementConsumer.consume_measurement
    monkeypatch.setattr(
        SynchronousMeasurementConsumer,
        "consume_measurement",
        lambda self, measurement: consumed.append(measurement) or original(self, measurement),
    )
    for value in (0.1, 0.3, 0.9):
        bound.record(value)
    assert consumed == [], "bound recordings fell back to the SDK's per-call path"
    data = reader.get_metrics_data()
    point = data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0]
    assert point.count == 4 and point.sum == pytest.approx(1.5)


def test_values_the_sdk_rejects_are_rejected_alike() -> None:
    reader = InMemoryMetricReader()
    provider = _provider([reader])
    counter = provider.get_meter("test").create_counter("test.counter")
    bound = bind(counter, {"a": "b"})
    for value in (1, -1, float("nan"), float("inf"), 2):
        bound.add(value)
    data = reader.get_metrics_data()
    assert data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0].value == 3


def _bound_histogram(provider: Any) -> BoundInstrument:
    return bind(provider.get_meter("test").create_histogram("test.histogram"), {"a": "b"})


def test_a_disabled_meter_or_no_sdk_records_nothing_as_the_plain_call() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        shutdown_on_exit=False,
        _meter_configurator=lambda scope: _MeterConfig(is_enabled=False),
    )
    bound = _bound_histogram(provider)
    assert bound.fast  # an SDK instrument, asked at each recording whether it is on
    bound.record(1.0)
    assert reader.get_metrics_data() is None
    assert not _bound_histogram(NoOpMeterProvider()).fast


def test_attribute_sets_are_bound_up_to_the_limit_then_recorded_plainly() -> None:
    reader = InMemoryMetricReader()
    provider = _provider([reader])
    histogram = provider.get_meter("test").create_histogram("http.server.request.duration")
    sets = BoundAttributeSets(histogram, HTTP_NAMES, max_sets=2)
    for status in (200, 404, 500, 200, 500):
        sets.record(0.1, {"http.request.method": "GET", "http.response.status_code": status})
    assert len(sets._bound) == 2
    data = reader.get_metrics_data()
    points = data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points
    counts = {p.attributes["http.response.status_code"]: p.count for p in points}
    assert counts == {200: 2, 404: 1, 500: 2}


class _WatchedLock:
    """The match's lock, noting whether it is held."""

    def __init__(self, lock: Any) -> None:
        self.lock, self.held = lock, False

    def __enter__(self) -> None:
        self.lock.acquire()
        self.held = True

    def __exit__(self, *exc: object) -> None:
        self.held = False
        self.lock.release()


def test_delta_recordings_aggregate_under_the_lock_collection_resets_with() -> None:
    """As the SDK does: a delta collection swaps the aggregations out under the match's lock,
    so a measurement aggregated outside it could land in one already collected and be lost."""
    reader = _reader(DELTA)
    provider = _provider([reader])
    histogram = provider.get_meter("test").create_histogram("test.histogram")
    bound = bind(histogram, {"a": "b"})
    bound.record(0.1)  # the SDK matches the instrument; then the bound path
    storage = next(iter(provider._measurement_consumer._reader_storages.values()))
    matches = storage._instrument_view_instrument_matches[histogram]
    assert all(match._reset_on_collect for match in matches)
    locks = []
    held_while_aggregating: list[bool] = []
    for match in matches:
        match._lock = watched = _WatchedLock(match._lock)
        locks.append(watched)
    aggregation_class = type(next(iter(matches[0]._attributes_aggregation.values())))
    original = aggregation_class.aggregate

    here = threading.get_ident()

    def aggregate(self: Any, measurement: Any, sample: bool = True) -> None:
        if threading.get_ident() == here:  # other tests' threads may aggregate too
            held_while_aggregating.append(all(lock.held for lock in locks))
        original(self, measurement, sample)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(aggregation_class, "aggregate", aggregate)
        for value in (0.2, 0.3):
            bound.record(value)
            reader.get_metrics_data()  # a delta collection: new aggregations next time
    assert held_while_aggregating == [True] * (2 * len(matches))
