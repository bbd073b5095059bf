"""What encoding spans and log records as they are queued (telemetry/pre_encoding.py) changes:
how long the export thread holds the GIL per batch, what the request path pays instead, and
how late the event loop runs while batches are exported.

    python bench/pre_encoding.py            # ~1 minute
    python bench/pre_encoding.py --rounds 3

Items are the model service's own: requests through the real app in process
(``telemetry_profile.Setup``), its 2 spans and 1 log record each. Three measurements:

* **export thread, per batch** (CPU time of the thread, medians of interleaved rounds): what
  it did before (every item encoded, the bytes parsed into the request message and serialised
  again for gRPC) and what it does now (the items' bytes joined into the request);
* **request path, per item**: encoding one item's framed message (what each span's end and
  each log record's emit now pays);
* **event-loop lateness**: an asyncio loop sleeping 1 ms at a time, 4,000 times, while a
  thread exports a 512-span and a 256-record batch every 50 ms the old way and the new way;
  how late each wake-up came (p50, p99, max): what a request arriving during an export waits.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from modelobs.telemetry import configure_logging
from modelobs.telemetry import otlp_encoding as wire
from modelobs.telemetry.pre_encoding import Encoded
from results_file import write_results
from telemetry_overhead import git_commit
from telemetry_profile import Setup, collect_items

SPAN_BATCH = 512
LOG_BATCH = 256
EXPORT_EVERY_S = 0.05
TICKS = 4000


def encoded(spans: list[Any], logs: list[Any]) -> tuple[list[Any], list[Any]]:
    """The items as the pre-encoding processors queue them."""
    return (
        [Encoded(s.resource, s.instrumentation_scope, wire.framed_span(s)) for s in spans],
        [Encoded(x.resource, x.instrumentation_scope, wire.framed_log(x)) for x in logs],
    )


def export_before(spans: list[Any], logs: list[Any]) -> None:
    """The export thread's work before: encode, parse into the message, serialise for gRPC."""
    ExportTraceServiceRequest.FromString(wire.encode_spans_bytes(spans)).SerializeToString()
    ExportLogsServiceRequest.FromString(wire.encode_logs_bytes(logs)).SerializeToString()


def export_now(spans: list[Any], logs: list[Any]) -> None:
    """The export thread's work now: the request's bytes, from the queued items' own."""
    wire.encode_spans_bytes(spans)
    wire.encode_logs_bytes(logs)


def thread_cpu_us(work: Callable[[], object], repeat: int = 50) -> float:
    """Median CPU time of this thread for one call of ``work``, µs."""
    times = []
    for _ in range(repeat):
        start = time.thread_time_ns()
        work()
        times.append(time.thread_time_ns() - start)
    return statistics.median(times) / 1e3


async def lateness_ms(export: Callable[[], object]) -> dict[str, float]:
    """How late a 1 ms sleep wakes while another thread runs ``export`` every 50 ms."""
    stop = threading.Event()

    def exporter() -> None:
        while not stop.wait(EXPORT_EVERY_S):
            export()

    thread = threading.Thread(target=exporter, daemon=True)
    thread.start()
    late = []
    try:
        for _ in range(TICKS):
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            late.append((time.perf_counter() - start - 0.001) * 1e3)
    finally:
        stop.set()
        thread.join()
    late.sort()
    return {
        "p50_ms": late[len(late) // 2],
        "p99_ms": late[int(len(late) * 0.99)],
        "max_ms": late[-1],
    }


async def main_async(rounds: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="modelobs-pre-encoding-"))
    setup = Setup("full", workdir)
    await setup.lifespan.__aenter__()
    configure_logging(stream=open(os.devnull, "w"))  # noqa: SIM115
    spans, logs = await collect_items(setup, SPAN_BATCH // 2)
    spans, logs = spans[:SPAN_BATCH], logs[:LOG_BATCH]
    figures: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    queued_spans, queued_logs = encoded(spans, logs)
    for r in range(rounds):
        add("export thread per batch before, µs", thread_cpu_us(lambda: export_before(spans, logs)))
        add(
            "request path per span, µs",
            thread_cpu_us(lambda: [wire.framed_span(s) for s in spans], 20) / len(spans),
        )
        add(
            "request path per log record, µs",
            thread_cpu_us(lambda: [wire.framed_log(x) for x in logs], 20) / len(logs),
        )
        add(
            "export thread per batch now, µs",
            thread_cpu_us(lambda: export_now(queued_spans, queued_logs)),
        )
        order = ("before", "now") if r % 2 == 0 else ("now", "before")
        for name in order:
            if name == "before":
                late = await lateness_ms(lambda: export_before(spans, logs))
            else:
                late = await lateness_ms(lambda: export_now(queued_spans, queued_logs))
            for key, value in late.items():
                add(f"event loop late {key.removesuffix('_ms')} while exporting {name}, ms", value)
        print(f"round {r + 1}/{rounds}", flush=True)
    await setup.lifespan.__aexit__(None, None, None)
    return {name: statistics.median(values) for name, values in figures.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    medians = asyncio.run(main_async(args.rounds))
    for name, value in medians.items():
        print(f"{name:<58} {value:9.2f}")
    out = write_results(
        "pre_encoding",
        {
            "commit": git_commit(),
            "rounds": args.rounds,
            "span_batch": SPAN_BATCH,
            "log_batch": LOG_BATCH,
            "export_every_s": EXPORT_EVERY_S,
            "ticks": TICKS,
            "medians": medians,
        },
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
