"""Where a model request's telemetry CPU goes, in process: the whole model service app called
straight through ASGI (no sockets), bare against full telemetry, the export's encoding
included, with a profile of what full adds.

    python bench/telemetry_profile.py            # ~1 minute
    python bench/telemetry_profile.py --quick    # ~15 seconds
    python bench/telemetry_profile.py --sdk-spans  # and full with the SDK's spans, side by side

The real providers (batch span and log processors) export to exporters that do what the
OTLP/gRPC exporters do before the network (ours: telemetry/exporters.py; the official
encoder: ``encode_*(batch).SerializeToString()``) and drop the bytes; each measurement ends
with a flush, so the encoding of what the requests produced is inside it. Process CPU time
(every thread) per request, setups interleaved round after round, medians. It is the quick
loop used to decide each change; telemetry_overhead.py is the end-to-end figure."""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
# Export happens only in the flush that ends each measurement, on the measuring thread (so a
# profile sees it too), and nothing is dropped: the processors' queues hold a whole round.
for _name, _value in {
    "OTEL_BSP_SCHEDULE_DELAY": "3600000",
    "OTEL_BLRP_SCHEDULE_DELAY": "3600000",
    "OTEL_BSP_MAX_QUEUE_SIZE": "200000",
    "OTEL_BLRP_MAX_QUEUE_SIZE": "200000",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "200000",
    "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": "200000",
}.items():
    os.environ.setdefault(_name, _value)

from fastapi import FastAPI  # noqa: E402
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs  # noqa: E402
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult  # noqa: E402

from modelobs.apps import model_service  # noqa: E402
from modelobs.model.data import EXAMPLE_RECORD  # noqa: E402
from modelobs.settings import Settings  # noqa: E402
from modelobs.telemetry import Telemetry, build_telemetry, configure_logging  # noqa: E402
from modelobs.telemetry.otlp_encoding import encode_logs_bytes, encode_spans_bytes  # noqa: E402
from results_file import write_results  # noqa: E402
from server_instrumentation import request as one_request  # noqa: E402
from telemetry_overhead import git_commit  # noqa: E402

BODY = ('{"record": ' + __import__("json").dumps(EXAMPLE_RECORD) + "}").encode()


class EncodingSpanExporter(SpanExporter):
    """The OTLP exporters' work before the network: encode and serialise."""

    def __init__(self) -> None:
        self.items = 0

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        encode_spans(spans).SerializeToString()
        self.items += len(spans)
        return SpanExportResult.SUCCESS


class EncodingLogExporter(LogRecordExporter):
    def __init__(self) -> None:
        self.items = 0

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        encode_logs(batch).SerializeToString()
        self.items += len(batch)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class WireSpanExporter(EncodingSpanExporter):
    """What our gRPC exporters do before the network (telemetry/exporters.py): the request's
    bytes, from spans the processor encoded as they ended (telemetry/pre_encoding.py)."""

    sends_pre_encoded = True

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        encode_spans_bytes(spans)
        self.items += len(spans)
        return SpanExportResult.SUCCESS


class WireLogExporter(EncodingLogExporter):
    sends_pre_encoded = True

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        encode_logs_bytes(batch)
        self.items += len(batch)
        return LogRecordExportResult.SUCCESS


class DiscardingSpanExporter(EncodingSpanExporter):
    """Takes the batch and drops it: the batch processor's work without the encoding."""

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.items += len(spans)
        return SpanExportResult.SUCCESS


class DiscardingLogExporter(EncodingLogExporter):
    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        self.items += len(batch)
        return LogRecordExportResult.SUCCESS


# name → (SDK on, span exporter, log exporter); None: that signal is not exported.
VARIANTS: dict[str, tuple[bool, type | None, type | None]] = {
    "bare": (False, None, None),
    "full": (True, WireSpanExporter, WireLogExporter),
    "full, official encoder": (True, EncodingSpanExporter, EncodingLogExporter),
    "full, encoding skipped": (True, DiscardingSpanExporter, DiscardingLogExporter),
    "full, no spans": (True, None, EncodingLogExporter),
    "full, no OTel logs": (True, EncodingSpanExporter, None),
    # full, with the SDK's own spans instead of ours (telemetry/light_spans.py).
    "full, SDK spans": (True, WireSpanExporter, WireLogExporter),
}


def make_telemetry(variant: str) -> tuple[Telemetry, Any, Any]:
    enabled, span_type, log_type = VARIANTS[variant]
    spans = span_type() if span_type else None
    logs = log_type() if log_type else None
    env = {"OTEL_SDK_DISABLED": "true"} if not enabled else {}
    if spans is None:
        env["OTEL_TRACES_EXPORTER"] = "none"
    if logs is None:
        env["OTEL_LOGS_EXPORTER"] = "none"
    os.environ.update(env)
    try:
        tel = build_telemetry(
            "model-service",
            span_exporter=spans,
            metric_reader=InMemoryMetricReader(),
            log_exporter=logs,
        )
    finally:
        for key in env:
            os.environ.pop(key, None)
    if variant == "full, SDK spans":
        tel.tracer_provider = tel.tracer_provider.sdk_provider  # type: ignore[attr-defined]
    return tel, spans, logs


async def request(app: FastAPI) -> int:
    """One POST /predict of a real record straight into the ASGI app; its status."""
    return await one_request(app, BODY)


class Setup:
    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.telemetry, self.spans, self.logs = make_telemetry(name)
        settings = Settings(
            model_dir=workdir / "model",
            prediction_db=workdir / f"{len(list(workdir.glob('*.db')))}.db",
            drift_interval_s=3600,
        )
        self.app = model_service.create_app(settings=settings, telemetry=self.telemetry)
        self.lifespan = self.app.router.lifespan_context(self.app)

    def flush(self) -> None:
        for provider in (self.telemetry.tracer_provider, self.telemetry.logger_provider):
            flush = getattr(provider, "force_flush", None)
            if flush is not None:
                flush()

    async def per_request_us(self, n: int) -> float:
        start = time.process_time()
        for _ in range(n):
            await request(self.app)
        self.flush()
        return (time.process_time() - start) / n * 1e6


def _package(filename: str) -> str:
    """Where a function lives, coarsely: a package (three levels for opentelemetry)."""
    if filename.startswith("~"):
        return "builtins (isinstance, dict, lock, ... methods)"
    path = filename.split("site-packages/")[-1].replace(str(ROOT / "service") + "/", "")
    if "/lib/python3" in path:
        return "standard library"
    parts = path.split("/")
    return "/".join(parts[:3] if parts[0] == "opentelemetry" else parts[:2])


async def calls_per_request(setup: Setup, n: int) -> dict[str, float]:
    """Python function calls per request by package, export included: unlike time, a count
    does not move with the machine's load. The batch processors' own threads are outside
    the profiler, so their export is done here (a flush after the requests)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        await request(setup.app)
    setup.flush()
    profiler.disable()
    counts: dict[str, float] = {}
    for (filename, _, _), row in pstats.Stats(profiler).stats.items():  # type: ignore[attr-defined]
        package = _package(filename)
        counts[package] = counts.get(package, 0.0) + row[1] / n
    return counts


async def profile(setup: Setup, n: int, top: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        await request(setup.app)
    setup.flush()
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(top)


async def collect_items(setup: Setup, n: int) -> tuple[list[Any], list[Any]]:
    """``n`` requests' spans and log records, as the exporters receive them."""
    from opentelemetry.sdk._logs.export import (
        InMemoryLogRecordExporter,
        SimpleLogRecordProcessor,
    )
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans_out, logs_out = InMemorySpanExporter(), InMemoryLogRecordExporter()
    setup.telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(spans_out))
    setup.telemetry.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs_out))
    for _ in range(n):
        await request(setup.app)
    return list(spans_out.get_finished_spans()), list(logs_out.get_finished_logs())


def encoding_us(spans: list[Any], logs: list[Any], rounds: int) -> dict[str, float]:
    """µs per item to encode and serialise a batch: the official encoder against ours (the
    request's bytes, as telemetry/exporters.py hands them to gRPC, from spans and records
    not encoded before). Tight loops, interleaved, medians: far steadier than whole requests
    on a shared machine."""
    cases: dict[str, tuple[Any, int]] = {
        "span, official": (lambda: encode_spans(spans).SerializeToString(), len(spans)),
        "span, ours": (
            lambda: encode_spans_bytes(spans),
            len(spans),
        ),
        "log record, official": (lambda: encode_logs(logs).SerializeToString(), len(logs)),
        "log record, ours": (
            lambda: encode_logs_bytes(logs),
            len(logs),
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (encode, items) in cases.items():
            start = time.process_time()
            encode()
            times[name].append((time.process_time() - start) / items * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


async def main_async(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="modelobs-profile-"))
    names = list(VARIANTS) if args.all else ["bare", "full"]
    if args.sdk_spans and not args.all:
        names.append("full, SDK spans")
    setups = [Setup(name, workdir) for name in names]
    # Both write their JSON line (bare keeps its stdout log), to nowhere.
    configure_logging(stream=open(os.devnull, "w"))  # noqa: SIM115
    for s in setups:
        await s.lifespan.__aenter__()
    configure_logging(stream=open(os.devnull, "w"))  # noqa: SIM115
    try:
        for s in setups:
            if await request(s.app) != 200:
                raise RuntimeError(f"{s.name}: POST /predict failed")
            await s.per_request_us(args.requests)
        times: dict[str, list[float]] = {s.name: [] for s in setups}
        for r in range(args.rounds):
            for s in setups if r % 2 == 0 else list(reversed(setups)):
                times[s.name].append(await s.per_request_us(args.requests))
        med = {k: statistics.median(v) for k, v in times.items()}
        full = setups[1]
        print(
            f"spans per request {full.spans.items / full_requests(args):.2f}, "
            f"log records per request {full.logs.items / full_requests(args):.2f}"
        )
        for name, value in med.items():
            print(
                f"{name:<24}{value:8.1f} µs CPU/request  {value - med['full']:+7.1f} vs full"
                f"  kept {med['bare'] / value:.3f}"
            )
        calls = {s.name: await calls_per_request(s, args.requests) for s in setups[:2]}
        extra_calls = {
            package: round(calls["full"].get(package, 0.0) - calls["bare"].get(package, 0.0), 1)
            for package in sorted(
                set(calls["full"]) | set(calls["bare"]),
                key=lambda p: calls["bare"].get(p, 0.0) - calls["full"].get(p, 0.0),
            )
        }
        print(
            f"Python calls per request: bare {sum(calls['bare'].values()):.0f}, "
            f"full {sum(calls['full'].values()):.0f}; what full adds, by package:"
        )
        for package, extra in extra_calls.items():
            if abs(extra) >= 1:
                print(f"  {extra:+8.1f}  {package}")
        spans, logs = await collect_items(setups[1], 256)  # a batch of each, as exported
        encoders = encoding_us(spans, logs, max(20, args.rounds * 3))
        for name, value in encoders.items():
            print(f"encode and serialise one {name:<22}{value:7.2f} µs")
        write_results(
            "telemetry_profile",
            {
                "commit": git_commit(),
                "rounds": args.rounds,
                "requests_per_round": args.requests,
                "cpu_us_per_request_median": med,
                "encoding_us_per_item": encoders,
                "python_calls_per_request": {k: sum(v.values()) for k, v in calls.items()},
                "extra_python_calls_per_request_by_package": extra_calls,
            },
        )
        if args.profile:
            await profile(setups[1], args.requests, args.top)
    finally:
        for s in setups:
            await s.lifespan.__aexit__(None, None, None)
    return 0


def full_requests(args: argparse.Namespace) -> int:
    return 1 + args.requests * (args.rounds + 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of full")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--all", action="store_true", help="every variant, for the breakdown")
    parser.add_argument(
        "--sdk-spans", action="store_true", help="also full with the SDK's spans (light_spans.py)"
    )
    args = parser.parse_args()
    args.rounds = args.rounds or (4 if args.quick else 12)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
