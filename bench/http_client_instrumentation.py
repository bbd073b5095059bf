"""What the gateway's client instrumentation costs per request, in process: ours
(telemetry/http_client.py) against the httpx instrumentation's ``instrument_client``.

    python bench/http_client_instrumentation.py            # ~1.5 minutes
    python bench/http_client_instrumentation.py --quick    # ~40 seconds

Two measurements, setups interleaved round after round (a shared machine's drift falls on
all alike), medians and minima of the process's CPU time per request (export threads
included), and the Python calls per request (profiled; deterministic):

* gateway — the gateway app through ASGI (no sockets), its upstream a bare model service
  behind ``httpx.ASGITransport``; the gateway bare (SDK disabled), with full telemetry and
  the library's client instrumentation, and with full telemetry and ours (the server side is
  ours in both). The spans and log records are encoded as the OTLP exporter would, then
  dropped. ``httpx.ASGITransport`` imports sniffio on every request: an artefact of the
  harness, the same in every setup.
* client — one request in a tight loop through an ``httpx.AsyncClient`` on a
  ``MockTransport`` answering 200: uninstrumented, the library, ours; spans through the
  batch processor to an exporter that drops them.

Figures go to bench/results/http_client_instrumentation.json.
"""

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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import server_instrumentation as si
import telemetry_profile as tp
from modelobs.apps import gateway, model_service
from modelobs.settings import Settings
from modelobs.telemetry import build_telemetry, configure_logging
from modelobs.telemetry import http_client as ours_module
from results_file import write_results
from telemetry_overhead import git_commit

LIBRARY, OURS, BARE, UNINSTRUMENTED = "library", "ours", "bare", "uninstrumented"
CALL_COUNT_REQUESTS = 200


async def gateway_request(app: Any) -> int:
    """One POST /v1/predict of a real record straight into the gateway's ASGI app."""
    return await si.request(app, tp.BODY, "/v1/predict")


def forcing(implementation: str) -> Callable[..., None]:
    """The gateway's instrument_client with the client implementation fixed (the setting
    would switch the server side too)."""

    def instrument(client: httpx.AsyncClient, _setting: str, **providers: Any) -> None:
        ours_module.instrument_client(client, implementation, **providers)  # type: ignore[arg-type]

    return instrument


async def cpu_us(call: Callable[[], Awaitable[Any]], n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        await call()
    return (time.process_time() - start) / n * 1e6


async def calls_per_request(call: Callable[[], Awaitable[Any]]) -> float:
    """Python calls one request makes (profiled): deterministic, unlike time."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(CALL_COUNT_REQUESTS):
        await call()
    profiler.disable()
    return pstats.Stats(profiler).total_calls / CALL_COUNT_REQUESTS  # type: ignore[attr-defined]


async def gateway_rounds(rounds: int, n: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    workdir = Path(tempfile.mkdtemp())
    os.environ["OTEL_SDK_DISABLED"] = "true"
    model_telemetry = build_telemetry("model-service")
    model = model_service.create_app(
        settings=Settings(model_dir=workdir / "model", prediction_db=workdir / "p.db"),
        telemetry=model_telemetry,
    )
    os.environ.pop("OTEL_SDK_DISABLED")
    transport = httpx.ASGITransport(app=model)
    apps: dict[str, Any] = {}
    contexts = [model.router.lifespan_context(model)]
    for name, variant, client in (
        (BARE, "bare", OURS),
        (LIBRARY, "full", LIBRARY),
        (OURS, "full", OURS),
    ):
        telemetry, _, _ = tp.make_telemetry(variant)
        app = gateway.create_app(
            settings=Settings(model_url="http://model", prediction_db=workdir / "g.db"),
            telemetry=telemetry,
            transport=transport,
        )
        context = app.router.lifespan_context(app)
        original = gateway.instrument_client
        gateway.instrument_client = forcing("library" if client == LIBRARY else "modelobs")
        try:
            await context.__aenter__()
        finally:
            gateway.instrument_client = original
        contexts.append(context)
        apps[name] = app
    await contexts[0].__aenter__()
    configure_logging(stream=open(os.devnull, "w"))  # noqa: SIM115
    for name, app in apps.items():
        assert await gateway_request(app) == 200, name
    calls = {
        name: await calls_per_request(lambda app=app: gateway_request(app))
        for name, app in apps.items()
    }
    figures: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, app in apps.items():
            figures[name].append(await cpu_us(lambda app=app: gateway_request(app), n))
    for context in reversed(contexts):
        await context.__aexit__(None, None, None)
    return figures, calls


async def client_rounds(rounds: int, n: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    telemetry = build_telemetry(
        "bench", span_exporter=si.NoExport(), metric_reader=InMemoryMetricReader()
    )
    clients: dict[str, httpx.AsyncClient] = {}
    for name in (UNINSTRUMENTED, LIBRARY, OURS):
        client = httpx.AsyncClient(transport=httpx.MockTransport(lambda _r: httpx.Response(200)))
        if name != UNINSTRUMENTED:
            ours_module.instrument_client(
                client,
                "library" if name == LIBRARY else "modelobs",
                tracer_provider=telemetry.tracer_provider,
                meter_provider=telemetry.meter_provider,
            )
        clients[name] = client
    url, body = "http://127.0.0.1:8000/predict", tp.BODY
    headers = {"content-type": "application/json", "idempotency-key": "k"}
    figures: dict[str, list[float]] = {name: [] for name in clients}
    calls = {
        name: await calls_per_request(
            lambda client=client: client.post(url, content=body, headers=headers)
        )
        for name, client in clients.items()
    }
    for _ in range(rounds):
        for name, client in clients.items():

            async def call(client: httpx.AsyncClient = client) -> None:
                await client.post(url, content=body, headers=headers)

            figures[name].append(await cpu_us(call, n))
    for client in clients.values():
        await client.aclose()
    telemetry.shutdown()
    return figures, calls


def summary(figures: dict[str, list[float]], base: str) -> dict[str, Any]:
    medians = {name: statistics.median(values) for name, values in figures.items()}
    above = {name: medians[name] - medians[base] for name in medians}
    # Setups of a round ran back to back: the median of their differences drifts least.
    paired = statistics.median(
        o - lib for o, lib in zip(figures[OURS], figures[LIBRARY], strict=True)
    )
    return {
        "median_us_per_request": {k: round(v, 1) for k, v in medians.items()},
        # Other jobs on a shared machine only ever add CPU time: the least round is the
        # steadiest reading of what a request costs.
        "min_us_per_request": {k: round(min(v), 1) for k, v in figures.items()},
        "above_" + base: {k: round(v, 1) for k, v in above.items()},
        "ours_minus_library_paired_median_us": round(paired, 1),
        "rounds_us_per_request": {k: [round(v, 1) for v in vs] for k, vs in figures.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, gateway_n, client_n = (4, 150, 1000) if args.quick else (24, 150, 1000)
    gateway_figures, gateway_calls = asyncio.run(gateway_rounds(rounds, gateway_n))
    client_figures, client_calls = asyncio.run(client_rounds(rounds, client_n))
    results = {
        "commit": git_commit(),
        "gateway": {
            "requests_per_round": gateway_n,
            "python_calls_per_request": {k: round(v, 1) for k, v in gateway_calls.items()},
            **summary(gateway_figures, BARE),
        },
        "client": {
            "requests_per_round": client_n,
            "python_calls_per_request": {k: round(v, 1) for k, v in client_calls.items()},
            **summary(client_figures, UNINSTRUMENTED),
        },
    }
    gw = results["gateway"]["median_us_per_request"]
    cl = results["client"]["median_us_per_request"]
    results["ours_minus_library_us"] = {
        "gateway": round(gw[OURS] - gw[LIBRARY], 1),
        "client": round(cl[OURS] - cl[LIBRARY], 1),
    }
    for part in ("gateway", "client"):
        print(f"python calls per request ({part}):", results[part]["python_calls_per_request"])
    out = write_results("http_client_instrumentation", results)
    for part in ("gateway", "client"):
        for name, value in results[part]["median_us_per_request"].items():
            print(f"{part:8} {name:15} {value:8.1f} µs")
    print(f"ours - library: {results['ours_minus_library_us']}; written to {out}")


if __name__ == "__main__":
    main()
