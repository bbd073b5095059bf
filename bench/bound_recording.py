"""What one metric recording costs through the SDK and bound (telemetry/bound_instruments.py),
in a tight loop: CPU µs per recording, the two interleaved round after round, medians; and
with ``--app``, what binding saves a whole model request in process.

    python bench/bound_recording.py            # ~20 seconds
    python bench/bound_recording.py --quick
    python bench/bound_recording.py --app      # ~1 minute

The provider is the services' own (build_telemetry: the drop views, the tail-sampling exemplar
filter) with an in-memory reader, recording the model service's attribute set (5 attributes),
inside a sampled span whose trace the filter keeps, so the histogram's recordings are offered
to the exemplar reservoir as a request's are. ``--app``: two full-telemetry model services in
one process (bench/telemetry_profile.py's setup: real providers, the export's encoding
included), one recording bound and one whose provider bind() does not recognise, so all
its recordings are plain; POST /predict into each in turn, CPU µs per request, medians.
Prints the figures; writes nothing."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.metrics._internal.measurement_consumer import (
    SynchronousMeasurementConsumer,
)
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from modelobs.telemetry import build_telemetry
from modelobs.telemetry.bound_instruments import bind

ATTRIBUTES = {
    "model.name": "iris",
    "model.version": "v1",
    "prediction.class": "setosa",
    "synthetic_request": "false",
    "deployment.environment.name": "dev",
}


def cpu_us_per_call(call: Callable[[], None], n: int) -> float:
    start = time.thread_time()
    for _ in range(n):
        call()
    return (time.thread_time() - start) / n * 1e6


class _UnrecognisedConsumer(SynchronousMeasurementConsumer):
    """The SDK's consumer under another class: bind() falls back to plain recordings."""


async def whole_requests(rounds: int, requests: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from modelobs.telemetry import configure_logging
    from telemetry_profile import Setup, calls_per_request, request

    workdir = Path(tempfile.mkdtemp(prefix="modelobs-bound-"))
    bound, plain = Setup("full", workdir), Setup("full", workdir)
    plain.telemetry.meter_provider._measurement_consumer.__class__ = _UnrecognisedConsumer
    setups = {"full, bound recordings": bound, "full, plain recordings": plain}
    configure_logging(stream=open(os.devnull, "w"))  # noqa: SIM115
    for setup in setups.values():
        await setup.lifespan.__aenter__()
    configure_logging(stream=open(os.devnull, "w"))  # noqa: SIM115
    calls: dict[str, float] = {}
    try:
        for setup in setups.values():  # warm up
            assert await request(setup.app) == 200
            await setup.per_request_us(requests)
        samples: dict[str, list[float]] = {name: [] for name in setups}
        for round_ in range(rounds):
            order = list(setups.items())
            for name, setup in order if round_ % 2 == 0 else reversed(order):
                samples[name].append(await setup.per_request_us(requests))
        for name, setup in setups.items():  # a count does not move with the machine's load
            calls[name] = sum((await calls_per_request(setup, requests)).values())
    finally:
        for setup in setups.values():
            await setup.lifespan.__aexit__(None, None, None)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"CPU µs per model request, median of {rounds} rounds of {requests} (interleaved, ABBA)")
    for name, value in medians.items():
        print(f"  {name:24} {value:7.1f}   Python calls per request {calls[name]:6.0f}")
    saved = medians["full, plain recordings"] - medians["full, bound recordings"]
    print(f"  binding saves {saved:.1f} µs per request")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--app", action="store_true", help="whole model requests instead")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    if args.app:
        asyncio.run(whole_requests(args.rounds or (10 if args.quick else 60), 100))
        return 0
    rounds = args.rounds or (5 if args.quick else 15)

    telemetry = build_telemetry("bench-bound", metric_reader=InMemoryMetricReader())
    meter = telemetry.meter
    histogram = meter.create_histogram("bench.histogram", unit="s")
    counter = meter.create_counter("bench.counter")
    bound_histogram, bound_counter = bind(histogram, ATTRIBUTES), bind(counter, ATTRIBUTES)
    assert bound_histogram.fast and bound_counter.fast

    # A sampled span whose trace the collector's probabilistic policy keeps: the filter says
    # yes and the reservoir is offered every recording (the costliest case).
    policy = telemetry.meter_provider._sdk_config.exemplar_filter.policy
    tracer = TracerProvider(sampler=ALWAYS_ON).get_tracer("bench")
    while True:
        span = tracer.start_span("request")
        if policy.keeps_trace_id(span.get_span_context().trace_id):
            break
    cases: dict[str, Callable[[], None]] = {
        "histogram, SDK": lambda: histogram.record(0.0123, ATTRIBUTES),
        "histogram, bound": lambda: bound_histogram.record(0.0123),
        "counter, SDK": lambda: counter.add(1, ATTRIBUTES),
        "counter, bound": lambda: bound_counter.add(1),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    with trace.use_span(span, end_on_exit=True):
        for call in cases.values():  # warm up: first recordings create the aggregations
            call()
        for round_ in range(rounds):
            order = list(cases.items())
            if round_ % 2:
                order.reverse()
            for name, call in order:
                samples[name].append(cpu_us_per_call(call, args.calls))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"CPU µs per recording, median of {rounds} rounds of {args.calls} calls (interleaved)")
    for name, value in medians.items():
        print(f"  {name:18} {value:6.2f}")
    for kind in ("histogram", "counter"):
        sdk, bound = medians[f"{kind}, SDK"], medians[f"{kind}, bound"]
        print(f"  {kind}: bound costs {bound / sdk:.2f} of the SDK's ({sdk - bound:.2f} µs less)")
    telemetry.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
