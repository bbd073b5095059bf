"""What server instrumentation costs per request, in process: our middleware
(telemetry/http_server.py) against the FastAPI instrumentation configured lean and with its
defaults, on the same app skeleton, with a per-request breakdown from a profile.

    python bench/server_instrumentation.py            # ~1.5 minutes
    python bench/server_instrumentation.py --quick    # ~20 seconds

Direct ASGI calls (no sockets, no server), a trivial POST endpoint among the model service's
routes, the real providers (batch span processor) exporting to a no-op exporter. Setups run
interleaved, round after round, so a shared machine's drift falls on all alike; medians are
reported. Figures go to bench/results/server_instrumentation.json; bench/README.md quotes
them next to the end-to-end run (telemetry_overhead.py).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from modelobs.apps.errors import install_error_handlers
from modelobs.telemetry import Telemetry, build_telemetry
from modelobs.telemetry.server_instrumentation import instrument_server
from results_file import write_results

ROOT = Path(__file__).resolve().parent.parent
BODY = b'{"record": {"age": 42}}'
PROFILE_ROUNDS = 5
BARE, OURS, LEAN, DEFAULTS = "bare", "ours", "library, lean", "library, defaults"
# The model service's routes, in its order, so route matching costs what it costs there.
ROUTES = ("/readyz", "/model", "/predict", "/feedback", "/predictions/{prediction_id}")


class NoExport(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def telemetry(enabled: bool = True, views: bool = True) -> Telemetry:
    """The service's providers, exporting nowhere; ``views=False``: without our Views."""
    if not enabled:
        os.environ["OTEL_SDK_DISABLED"] = "true"
    try:
        tel = build_telemetry(
            "bench", span_exporter=NoExport(), metric_reader=InMemoryMetricReader()
        )
    finally:
        os.environ.pop("OTEL_SDK_DISABLED", None)
    if not views:
        tel = replace(tel, meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]))
    return tel


async def _ok() -> dict[str, int]:
    return {"ok": 1}


def app_with(instrument: Callable[[FastAPI, Telemetry], None], tel: Telemetry) -> FastAPI:
    """The service skeleton's error handlers and probe, the model service's routes."""
    app = FastAPI(title="bench")
    install_error_handlers(app, tel)
    for path in ("/healthz", *ROUTES):
        app.add_api_route(path, endpoint=_ok, methods=["POST" if path == "/predict" else "GET"])
    instrument(app, tel)
    return app


def library_defaults(app: FastAPI, tel: Telemetry) -> None:
    """instrument_app with nothing but the providers: receive/send spans, probes traced."""
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider
    )


def setups() -> dict[str, FastAPI]:
    ours = lambda app, tel: instrument_server(app, tel, "modelobs")  # noqa: E731
    lean = lambda app, tel: instrument_server(app, tel, "library")  # noqa: E731
    return {
        BARE: app_with(ours, telemetry(enabled=False)),  # nothing installed but the marker
        OURS: app_with(ours, telemetry()),
        LEAN: app_with(lean, telemetry()),
        DEFAULTS: app_with(library_defaults, telemetry(views=False)),
    }


TEMPLATE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/predict",
    "raw_path": b"/predict",
    "root_path": "",
    "query_string": b"",
    "headers": [
        (b"host", b"127.0.0.1:8000"),
        (b"user-agent", b"wrk"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
    ],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
}


async def request(app: FastAPI, body: bytes = BODY, path: str = "/predict") -> int:
    """One POST of ``body`` to ``path`` straight into the ASGI app; its status."""
    status = [0]
    scope = dict(TEMPLATE, path=path, raw_path=path.encode())
    if body is not BODY:
        scope["headers"] = [*TEMPLATE["headers"][:3], (b"content-length", str(len(body)).encode())]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]

    await app(scope, receive, send)
    return status[0]


async def per_request_us(app: FastAPI, n: int) -> float:
    """CPU time of the whole process (the span processor's thread included) per request:
    unlike elapsed time, not stretched by whatever else the shared machine runs."""
    start = time.process_time()
    for _ in range(n):
        await request(app)
    return (time.process_time() - start) / n * 1e6


# Where profiled time goes, by the code it runs in (first match wins). Time in builtins and
# the standard library (isinstance, dict and lock methods, asyncio) goes to whoever called it.
CATEGORIES = (
    ("modelobs/telemetry/http_server", "our middleware's own code"),
    ("modelobs/telemetry/", "marking the app's telemetry current (every setup)"),
    ("opentelemetry/instrumentation/", "the library's own code (asgi, fastapi, helpers)"),
    ("opentelemetry/util/http", "the library's own code (asgi, fastapi, helpers)"),
    ("opentelemetry/attributes", "attribute cleaning (API)"),
    ("opentelemetry/sdk/trace", "spans in the SDK: create, set, end, batch processor"),
    ("opentelemetry/sdk/metrics", "metric recordings in the SDK (attribute hashing, aggregation)"),
    ("opentelemetry/", "context, propagation, trace API"),
    ("starlette/routing", "routing (Starlette/FastAPI)"),
    ("fastapi/routing", "routing (Starlette/FastAPI)"),
    ("starlette/middleware", "Starlette middleware layers"),
    ("re.Pattern", "regular expressions"),
    ("urllib/parse", "URL parsing"),
    ("site-packages/", "the app: FastAPI, Starlette, pydantic"),
)
OTHER = "the rest (event loop, top-level calls)"


def owner(func: tuple[str, int, str]) -> str | None:
    filename, _, name = func
    where = f"{filename}:{name}"
    return next((label for key, label in CATEGORIES if key in where), None)


def attribute(stats: dict[Any, Any], func: Any, amount: float, totals: dict[str, float]) -> None:
    """Adds ``amount`` of ``func``'s own time to its category, or shares it among its
    callers by what each call site spent in it."""
    for _ in range(8):
        label = owner(func)
        if label is not None:
            totals[label] = totals.get(label, 0.0) + amount
            return
        callers = stats[func][4] if func in stats else {}
        spent = {caller: timing[2] for caller, timing in callers.items() if timing[2] > 0}
        if not spent:
            break
        if len(spent) > 1:
            total = sum(spent.values())
            for caller, share in spent.items():
                attribute(stats, caller, amount * share / total, totals)
            return
        (func,) = spent
    totals[OTHER] = totals.get(OTHER, 0.0) + amount


def profile(app: FastAPI, n: int) -> dict[str, float]:
    """Profiled µs per request, by category (cProfile inflates them all alike)."""
    profiler = cProfile.Profile()

    async def run() -> None:
        profiler.enable()
        for _ in range(n):
            await request(app)
        profiler.disable()

    asyncio.run(run())
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    totals: dict[str, float] = {}
    for func, (_, _, tottime, _, _) in stats.items():
        attribute(stats, func, tottime / n * 1e6, totals)
    return totals


def breakdown(
    profiled: dict[str, dict[str, float]], measured_cost: dict[str, float]
) -> dict[str, dict[str, float]]:
    """Each setup's profiled time above bare, by category, scaled so that the categories add
    up to the measured (unprofiled) cost per request."""
    result = {}
    for name, totals in profiled.items():
        if name == BARE:
            continue
        above = {
            label: totals.get(label, 0.0) - profiled[BARE].get(label, 0.0)
            for label in set(totals) | set(profiled[BARE])
        }
        scale = measured_cost[name] / sum(above.values())
        result[name] = {
            label: round(value * scale, 1)
            for label, value in sorted(above.items(), key=lambda kv: -kv[1])
            if abs(value * scale) >= 0.5
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--requests", type=int, default=None, help="per setup and round")
    args = parser.parse_args()
    rounds = args.rounds or (6 if args.quick else 30)
    n = args.requests or (500 if args.quick else 1000)
    apps = setups()

    async def check_and_warm() -> None:
        for name, app in apps.items():
            status = await request(app)
            if status != 200:
                raise RuntimeError(f"{name}: POST /predict answered {status}")
            await per_request_us(app, n)

    asyncio.run(check_and_warm())
    times: dict[str, list[float]] = {name: [] for name in apps}
    for r in range(rounds):
        order = list(apps) if r % 2 == 0 else list(reversed(apps))
        for name in order:
            times[name].append(asyncio.run(per_request_us(apps[name], n)))
    median = {name: statistics.median(values) for name, values in times.items()}
    cost = {name: median[name] - median[BARE] for name in apps if name != BARE}
    profiled: dict[str, dict[str, float]] = {name: {} for name in apps}
    for _ in range(PROFILE_ROUNDS):  # interleaved too, and summed
        for name, app in apps.items():
            for label, value in profile(app, n).items():
                profiled[name][label] = profiled[name].get(label, 0.0) + value / PROFILE_ROUNDS
    parts = breakdown(profiled, cost)

    print(f"{'setup':<20}{'CPU µs/request':>16}{'above bare':>12}{'bare throughput kept':>22}")
    for name in apps:
        above = median[name] - median[BARE]
        print(f"{name:<20}{median[name]:>16.1f}{above:>12.1f}{median[BARE] / median[name]:>22.3f}")
    for name, items in parts.items():
        print(f"\n{name}: +{cost[name]:.0f} µs per request, where (profile, scaled):")
        for label, value in items.items():
            print(f"  {value:>7.1f} µs  {label}")
    out = write_results(
        "server_instrumentation",
        {
            "rounds": rounds,
            "requests_per_round": n,
            "median_us_per_request": median,
            "us_above_bare": cost,
            "bare_throughput_kept": {k: median[BARE] / v for k, v in median.items()},
            "breakdown_us": parts,
        },
    )
    print(f"\nwrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
