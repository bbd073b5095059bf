"""Spans without the SDK's per-span machinery: a tracer and span that keep everything a user
configures on the SDK ``TracerProvider`` (sampler, id generator, resource, scope, span limits,
span processors) and hand every exporter an object that is an SDK ``ReadableSpan``.

Why hand-written: the SDK has no cheaper span. Its ``Span`` cleans every attribute through
``BoundedAttributes`` (a lock, a recursive type check and a copy per call), builds a
``SamplingResult`` and a ``ReadableSpan`` copy per span, and ``start_as_current_span`` runs a
generator-based context manager. Our span stores attributes in a plain dict when they are
already valid (str/bool/int/float/bytes/None values under the length limit, non-empty str
keys) and hands anything else to the SDK's own cleaning function, so the result is the
SDK's; it is its own ``ReadableSpan`` at the end (nothing can change it once ended). The
default sampler (``parentbased_always_on``) is decided inline, exactly as it decides; any
other sampler is called. Measured with the service's processors (``bench/light_spans.py``,
interleaved, medians of thread CPU, three runs on the shared machine): a server-shaped span
(11 attributes, 2 set_attribute, attach/detach) SDK 25-33 µs, light 10 µs;
``start_as_current_span`` 23-27 → 8 µs; ``start_span`` + ``end`` 15-20 → 5-6 µs; deciding
the default sampler inline saves 1.1-2.3 µs of that. Exporting them costs less too (a plain
dict iterates in C where ``BoundedAttributes`` goes through the Mapping ABC): 5.7 instead of
8.2 µs a span with our wire encoder, 32.5 instead of 35.8 with the official one. A whole
model request in process, full telemetry's CPU over bare: ``bench/telemetry_profile.py
--sdk-spans`` (SDK and light spans side by side in one process) 141-197 µs less a request;
``--quick`` alternating with main's code, five pairs, 238 against 313 µs (medians); 291 fewer
Python calls a request (2,951 → 2,660, deterministic).

Behaviour as the SDK's ``Span`` has it (``opentelemetry-sdk`` 1.45; its code read, not copied):
attribute count and value-length limits with the same drop order and counts, invalid keys
dropped and counted, invalid values converted as the SDK converts them, no writes after
``end()`` (the SDK's warnings), events and links through the SDK's ``BoundedList`` and
``BoundedAttributes``, ``record_exception``'s four attributes, ``set_status`` (OK final,
UNSET ignored), ``update_name``, ``end()`` once, and the context-manager semantics of
``use_span`` / ``start_as_current_span`` (exception event and ERROR status by default).
``tests/test_light_spans.py`` holds both to the same exported spans. One difference: an
exception recorded by ``start_as_current_span`` has a stacktrace that starts at the ``with``
block, without the frames of the SDK's generator-based manager.

``Telemetry.tracer_provider`` hands it out for every tracer (ours, the httpx and the FastAPI
instrumentations'), not only on the hot path: one span class in the service, so what the
conformance and trace tests check is what runs, and every span gets the saving.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from time import time_ns
from types import TracebackType
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes, _clean_attribute_value
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics
from opentelemetry.sdk.trace.sampling import DEFAULT_ON, Decision
from opentelemetry.sdk.util import BoundedList
from opentelemetry.semconv.attributes.exception_attributes import (
    EXCEPTION_ESCAPED,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
)
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util import types

# The SDK's own loggers: whatever a user configured for its warnings applies to ours.
_span_logger = logging.getLogger("opentelemetry.sdk.trace")
_attribute_logger = logging.getLogger("opentelemetry.attributes")

# Values the SDK keeps as they are (exact types; subclasses go through the SDK's cleaning).
_PLAIN = frozenset({bool, int, float, bytes, type(None)})
_UNSET_STATUS = Status(StatusCode.UNSET)
_NO_LIMIT = sys.maxsize
_FLAGS = {
    (sampled, random): TraceFlags(
        (TraceFlags.SAMPLED if sampled else 0) | (TraceFlags.RANDOM_TRACE_ID if random else 0)
    )
    for sampled in (False, True)
    for random in (False, True)
}


class LightSpan(trace_api.Span, ReadableSpan):
    """A recording span; once ended, the ``ReadableSpan`` processors and exporters read."""

    # Until first written (most spans never write some of them), read from the class.
    _end_time: int | None = None
    _status = _UNSET_STATUS
    _events: Any = ()
    _links: Any = ()
    _dropped_attributes = 0
    _end_metrics: Callable[[], None] | None = None

    def __init__(
        self,
        tracer: LightTracer,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: types.Attributes,
        links: Sequence[trace_api.Link],
        record_exception: bool,
        set_status_on_exception: bool,
        resource: Resource,
    ) -> None:
        # ReadableSpan's fields, set directly (its __init__ would build a Resource).
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._resource = resource
        self._instrumentation_info = tracer.instrumentation_info
        self._instrumentation_scope = tracer.instrumentation_scope
        self._start_time: int | None = None
        self._attributes: dict[str, Any] = {}
        self._tracer = tracer
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception
        self._lock = threading.Lock()
        if attributes:
            self._set_items(attributes)
        if links:
            self._links = tracer.bounded_links(links)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name="{self._name}", context={self._context})'

    # ------------------------------------------------------------------ ReadableSpan

    @property
    def dropped_attributes(self) -> int:
        return self._dropped_attributes

    @property
    def dropped_events(self) -> int:
        return self._events.dropped if isinstance(self._events, BoundedList) else 0

    @property
    def dropped_links(self) -> int:
        return self._links.dropped if isinstance(self._links, BoundedList) else 0

    def get_span_context(self) -> SpanContext:
        return self._context

    def _readable_span(self) -> ReadableSpan:
        """A snapshot, as the SDK's span gives one (ours is its own once ended)."""
        return self if self._end_time is not None else _snapshot(self)

    # ---------------------------------------------------------------- attributes

    def _set_items(self, attributes: Mapping[str, Any]) -> None:
        """As ``BoundedAttributes._set_items``; call with the lock held or before start."""
        limits = self._tracer
        max_count = limits.max_span_attributes
        if max_count == 0:
            self._dropped_attributes += len(attributes)
            return
        max_length = limits.max_span_attribute_length
        for key, value in attributes.items():
            kind = type(value)
            if (
                type(key) is not str
                or not key
                or (kind not in _PLAIN and (kind is not str or len(value) > max_length))
            ):
                cleaned = _clean_attribute_value(attributes, limits.sdk_max_span_attribute_length)
                self._dropped_attributes += len(attributes) - len(cleaned)
                attributes = cleaned
                break
        if not self._attributes and len(attributes) <= max_count:
            self._attributes = dict(attributes)  # a new span's: nothing to reorder or drop
            return
        store = self._store
        for key, value in attributes.items():
            store(key, value, max_count)

    def _store(self, key: str, value: Any, max_count: int) -> None:
        """One cleaned attribute, under the count limit as the SDK keeps it: a rewritten key
        moves last; a new key on a full span pushes the oldest out (counted dropped)."""
        stored = self._attributes
        if key in stored:
            del stored[key]
        elif len(stored) >= max_count:
            _attribute_logger.warning(
                "Attributes dict is full. Dropping the oldest key-value pair from "
                "attributes to make space for the new key-value pair."
            )
            del stored[next(iter(stored))]
            self._dropped_attributes += 1
        stored[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        with self._lock:
            if self._end_time is not None:
                _span_logger.warning("Setting attribute on ended span.")
                return
            self._set_items(attributes)

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        with self._lock:
            if self._end_time is not None:
                _span_logger.warning("Setting attribute on ended span.")
                return
            limits = self._tracer
            if limits.max_span_attributes == 0:
                self._dropped_attributes += 1
                return
            if not key or not isinstance(key, str):
                _attribute_logger.warning(
                    "invalid key `%s`. must be non-empty string. Dropping key from attributes.",
                    key,
                )
                self._dropped_attributes += 1
                return
            kind = type(value)
            if kind not in _PLAIN and (
                kind is not str or len(value) > limits.max_span_attribute_length  # type: ignore[arg-type]
            ):
                value = _clean_attribute_value(value, limits.sdk_max_span_attribute_length)
            self._store(key, value, limits.max_span_attributes)

    # ------------------------------------------------------------ events, links

    def _ended_warning(self, operation: str) -> bool:
        """True (and the SDK's warning) when the span has ended."""
        if self._end_time is None:
            return False
        _span_logger.warning("Tried calling %s on an ended span.", operation)
        return True

    def add_event(
        self,
        name: str,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
    ) -> None:
        limits = self._tracer
        event = Event(name, limits.bounded(attributes, limits.max_event_attributes), timestamp)
        self._append("_events", event, limits.max_events, "_add_event")

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if not _valid_link(context, attributes):
            return
        limits = self._tracer
        link = trace_api.Link(context, limits.bounded(attributes, limits.max_link_attributes))
        self._append("_links", link, limits.max_links, "_add_link")

    def _append(self, field: str, item: Any, max_items: int | None, operation: str) -> None:
        """An event or a link, into a ``BoundedList`` made on first use, as the SDK keeps
        them; none after the span ended (the SDK's warning names ``operation``)."""
        with self._lock:
            if self._end_time is None:
                items = getattr(self, field)
                if not isinstance(items, BoundedList):
                    items = BoundedList(max_items)
                    setattr(self, field, items)
                items.append(item)
                return
        self._ended_warning(operation)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        exception_class = type(exception)
        module, qualname = exception_class.__module__, exception_class.__qualname__
        recorded: dict[str, Any] = {
            EXCEPTION_TYPE: f"{module}.{qualname}" if module and module != "builtins" else qualname,
            EXCEPTION_MESSAGE: str(exception),
            EXCEPTION_STACKTRACE: "".join(traceback.format_exception(exception)),
            EXCEPTION_ESCAPED: str(escaped),
        }
        if attributes:
            recorded.update(attributes)
        self.add_event("exception", recorded, timestamp)

    # ------------------------------------------------------- status, name, end

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        with self._lock:
            if self._end_time is None:
                current = self._status.status_code
                if isinstance(status, Status):
                    if current is StatusCode.OK or status.status_code is StatusCode.UNSET:
                        return
                    if description is not None:
                        _span_logger.warning(
                            "Description %s ignored. Use either `Status` or "
                            "`(StatusCode, Description)`",
                            description,
                        )
                    self._status = status
                elif isinstance(status, StatusCode):
                    if current is StatusCode.OK or status is StatusCode.UNSET:
                        return
                    self._status = Status(status, description)
                return
        self._ended_warning("set_status")

    def update_name(self, name: str) -> None:
        with self._lock:
            if self._end_time is None:
                self._name = name
                return
        self._ended_warning("update_name")

    def is_recording(self) -> bool:
        return self._end_time is None

    def start(
        self, start_time: int | None = None, parent_context: context_api.Context | None = None
    ) -> None:
        with self._lock:
            if self._start_time is not None:
                _span_logger.warning("Calling start() on a started span.")
                return
            self._start_time = start_time if start_time is not None else time_ns()
        self._tracer.span_processor.on_start(self, parent_context=parent_context)

    def end(self, end_time: int | None = None) -> None:
        with self._lock:
            if self._start_time is None:
                raise RuntimeError("Calling end() on a not started span.")
            if self._end_time is not None:
                _span_logger.warning("Calling end() on an ended span.")
                return
            self._end_time = end_time if end_time is not None else time_ns()
        if self._end_metrics is not None:
            self._end_metrics()
        processor = self._tracer.span_processor
        processor._on_ending(self)
        processor.on_end(self)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """``with tracer.start_span(...) as span``: as the SDK's span, the exception is
        recorded as escaped and sets an ERROR status (unless turned off), then the span ends."""
        if exc_val is not None and self.is_recording():
            if self._record_exception:
                self.record_exception(exception=exc_val, escaped=True)
            if self._set_status_on_exception:
                self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        self.end()


def _snapshot(span: LightSpan) -> ReadableSpan:
    return ReadableSpan(
        name=span._name,
        context=span._context,
        parent=span._parent,
        resource=span._resource,
        attributes=dict(span._attributes),
        events=span._events,
        links=span._links,
        kind=span._kind,
        status=span._status,
        start_time=span._start_time,
        end_time=span._end_time,
        instrumentation_scope=span._instrumentation_scope,
    )


def _valid_link(context: SpanContext, attributes: types.Attributes) -> bool:
    """The SDK's rule: a link needs a valid context, or attributes or a trace state."""
    return bool(context and (context.is_valid or (attributes or context.trace_state)))


class _CurrentSpan:
    """``start_as_current_span``'s context manager (and decorator, sync or async), with
    ``use_span``'s semantics, without a generator per span."""

    __slots__ = ("_args", "_span", "_token", "_tracer")

    def __init__(self, tracer: LightTracer, args: tuple[Any, ...]) -> None:
        self._tracer = tracer
        self._args = args
        self._span: trace_api.Span | None = None
        self._token: object = None

    def __enter__(self) -> trace_api.Span:
        name, context, kind, attributes, links, start_time, record, set_status, _ = self._args
        span = self._tracer.start_span(
            name, context, kind, attributes, links, start_time, record, set_status
        )
        self._span = span
        self._token = context_api.attach(trace_api.set_span_in_context(span))
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        span = self._span
        assert span is not None
        context_api.detach(self._token)
        try:
            # As use_span: only Exception (not GeneratorExit, cancellation) marks the span.
            if isinstance(exc_val, Exception) and span.is_recording():
                _, _, _, _, _, _, record, set_status, _ = self._args
                if record:
                    span.record_exception(exc_val)
                if set_status:
                    span.set_status(
                        Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}")
                    )
        finally:
            if self._args[8]:  # end_on_exit
                span.end()

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Used as a decorator: a fresh span per call, ended after the coroutine finishes."""
        tracer, args = self._tracer, self._args
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_traced(*a: Any, **kw: Any) -> Any:
                with _CurrentSpan(tracer, args):
                    return await func(*a, **kw)

            return async_traced

        @functools.wraps(func)
        def traced(*a: Any, **kw: Any) -> Any:
            with _CurrentSpan(tracer, args):
                return func(*a, **kw)

        return traced


class LightTracer(trace_api.Tracer):
    """The SDK tracer's configuration (read from it per span where it can change: sampler,
    resource, enabled), with light spans."""

    def __init__(self, sdk_tracer: SdkTracer) -> None:
        self.sdk_tracer = sdk_tracer
        self.span_processor: SpanProcessor = sdk_tracer.span_processor
        self.id_generator = sdk_tracer.id_generator
        self.instrumentation_info = sdk_tracer.instrumentation_info
        self.instrumentation_scope = sdk_tracer._instrumentation_scope
        limits = sdk_tracer._span_limits
        self.max_span_attributes: int = (
            _NO_LIMIT if limits.max_span_attributes is None else limits.max_span_attributes
        )
        self.sdk_max_span_attribute_length: int | None = limits.max_span_attribute_length
        self.max_span_attribute_length: int = (
            _NO_LIMIT
            if limits.max_span_attribute_length is None
            else limits.max_span_attribute_length
        )
        self.max_attribute_length = limits.max_attribute_length
        self.max_event_attributes = limits.max_event_attributes
        self.max_link_attributes = limits.max_link_attributes
        self.max_events = limits.max_events
        self.max_links = limits.max_links
        # The SDK's span counters (otel.sdk.span.started / .live), when its self-metrics
        # are on. Its provider gets no meter provider here, so they go to the global one;
        # while that is unset, its proxy instruments drop every recording, and so do we,
        # without building their attributes (1.7 µs a span, bench/light_spans.py).
        metrics = sdk_tracer._tracer_metrics
        self._tracer_metrics = None if isinstance(metrics, NoOpTracerMetrics) else metrics
        started = getattr(metrics, "_started_spans", None)
        self._metrics_proxy = started if hasattr(started, "_real_instrument") else None

    def _span_metrics(self, parent: SpanContext | None, decision: Decision) -> Any:
        """The SDK tracer's start-of-span recording and its end-of-span callback, or None."""
        metrics, proxy = self._tracer_metrics, self._metrics_proxy
        if metrics is None or (proxy is not None and proxy._real_instrument is None):
            return None
        return metrics.start_span(parent, decision)

    def bounded_links(self, links: Sequence[trace_api.Link]) -> BoundedList:
        """A new span's links, as the SDK keeps them (valid ones, attributes bounded)."""
        valid = []
        for link in links:
            if link and _valid_link(link.context, link.attributes):
                link._attributes = self.bounded(link.attributes, self.max_link_attributes)  # type: ignore[attr-defined]
                valid.append(link)
        return BoundedList.from_seq(self.max_links, valid)

    def bounded(self, attributes: types.Attributes, max_count: int | None) -> BoundedAttributes:
        """An event's or link's attributes, as the SDK bounds them."""
        return BoundedAttributes(
            max_count, attributes, max_value_len=self.max_attribute_length, immutable=True
        )

    def start_span(
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[trace_api.Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace_api.Span:
        links = links or ()
        parent = trace_api.get_current_span(context).get_span_context()
        if parent is not None and not isinstance(parent, SpanContext):
            raise TypeError("parent_span_context must be a SpanContext or None.")
        sdk = self.sdk_tracer
        if not sdk._tracer_config.is_enabled:
            return trace_api.NonRecordingSpan(context=parent)
        ids = self.id_generator
        if parent is None or not parent.is_valid:
            parent = None
            trace_id = ids.generate_trace_id()
            random_id = ids.is_trace_id_random()
        else:
            trace_id = parent.trace_id
            random_id = parent.trace_flags.random_trace_id
        sampler = sdk.sampler
        if sampler is DEFAULT_ON:
            # parentbased_always_on, decided as it decides: a root or a sampled parent
            # samples (the parent's trace state carried on), an unsampled parent drops.
            sampled = parent is None or parent.trace_flags.sampled
            decision = Decision.RECORD_AND_SAMPLE if sampled else Decision.DROP
            trace_state = None if parent is None else parent.trace_state
        else:
            result = sampler.should_sample(context, trace_id, name, kind, attributes, links)
            decision, attributes = result.decision, result.attributes
            trace_state = result.trace_state
            sampled = decision is Decision.RECORD_AND_SAMPLE
        span_context = SpanContext(
            trace_id,
            ids.generate_span_id(),
            is_remote=False,
            trace_flags=_FLAGS[(sampled, bool(random_id))],
            trace_state=trace_state,
        )
        end_metrics = self._span_metrics(parent, decision)
        if decision is Decision.DROP:
            return trace_api.NonRecordingSpan(context=span_context)
        span = LightSpan(
            self,
            name,
            span_context,
            parent,
            kind,
            attributes,
            links,
            record_exception,
            set_status_on_exception,
            sdk.resource,
        )
        if end_metrics is not None:
            span._end_metrics = end_metrics
        span.start(start_time, context)
        return span

    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[trace_api.Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> _CurrentSpan:
        return _CurrentSpan(
            self,
            (
                name,
                context,
                kind,
                attributes,
                links,
                start_time,
                record_exception,
                set_status_on_exception,
                end_on_exit,
            ),
        )


class LightTracerProvider(trace_api.TracerProvider):
    """An SDK ``TracerProvider`` handing out light tracers; everything else is the SDK
    provider's (processors, flush, shutdown, resource, sampler, id generator)."""

    def __init__(self, sdk_provider: SdkTracerProvider) -> None:
        self.sdk_provider = sdk_provider
        self._tracers: dict[int, LightTracer] = {}
        self._lock = threading.Lock()

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: types.Attributes = None,
    ) -> trace_api.Tracer:
        sdk_tracer = self.sdk_provider.get_tracer(
            instrumenting_module_name, instrumenting_library_version, schema_url, attributes
        )
        if not isinstance(sdk_tracer, SdkTracer):  # OTEL_SDK_DISABLED: the SDK's no-op
            return sdk_tracer
        with self._lock:  # the SDK keeps one tracer per scope, so do we
            light = self._tracers.get(id(sdk_tracer))
            if light is None or light.sdk_tracer is not sdk_tracer:
                light = self._tracers[id(sdk_tracer)] = LightTracer(sdk_tracer)
        return light

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        self.sdk_provider.add_span_processor(span_processor)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.sdk_provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.sdk_provider.shutdown()

    @property
    def resource(self) -> Resource:
        return self.sdk_provider.resource

    @property
    def sampler(self) -> Any:
        return self.sdk_provider.sampler

    @property
    def id_generator(self) -> Any:
        return self.sdk_provider.id_generator

    def __getattr__(self, name: str) -> Any:
        """Anything else the SDK provider has (its span limits, its active processor)."""
        if name == "sdk_provider":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.sdk_provider, name)
