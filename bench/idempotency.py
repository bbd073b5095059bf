"""Benchmark: what the model service's Idempotency-Key map costs on the request path, and how
much memory a stored answer takes.

Three figures; times are medians of single calls timed in turns with and without the key:

* **hook**: the per-request work of the hook alone (read the body, fingerprint it, look the
  key up, store the answer) around a work function that answers a ready response, against
  calling that work function directly; single record and a 256-record batch.
* **predict**: a whole ``POST /predict`` through the real app in-process (ASGI, no sockets;
  the OpenTelemetry SDK disabled and logs at WARNING, so the denominator is small and the
  percentage conservative), with a new key per request vs without a key.
* **memory**: tracemalloc's growth per stored answer, minus the key and body bytes the map
  counts itself: the per-entry overhead (``ENTRY_OVERHEAD_BYTES`` in apps/idempotency.py).

    .venv/bin/python bench/idempotency.py            # ~1 minute
    .venv/bin/python bench/idempotency.py --quick    # a few seconds
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from opentelemetry.sdk.metrics import MeterProvider

from modelobs.apps import model_service
from modelobs.apps.idempotency import ENTRY_OVERHEAD_BYTES, IdempotentAnswers
from modelobs.model.data import EXAMPLE_RECORD
from modelobs.model.train import train_and_save
from modelobs.settings import Settings
from modelobs.telemetry import build_telemetry, configure_logging

BATCH = 256


def _answers(max_entries: int = 10_000) -> IdempotentAnswers:
    return IdempotentAnswers(
        MeterProvider().get_meter("bench"),
        window_s=300,
        max_entries=max_entries,
        max_bytes=1 << 40,
        max_body_bytes=1 << 20,
    )


def _request(body: bytes, key: str | None) -> Request:
    headers = [(b"content-type", b"application/json")]
    if key is not None:
        headers.append((b"idempotency-key", key.encode()))
    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": headers}

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


def _predict_answer(records: int) -> dict:
    one = {
        "prediction_id": str(uuid.uuid4()),
        "prediction": "stay",
        "score": 0.912345,
        "probabilities": {"churn": 0.087655, "stay": 0.912345},
    }
    return {
        "model": {"name": "churn-classifier", "version": "1.0.0"},
        "predictions": [one] * records,
    }


async def _interleaved(
    first: Callable[[], Awaitable[object]], second: Callable[[], Awaitable[object]], n: int
) -> tuple[float, float]:
    """Median seconds per call of each, timed call by call in pairs whose order is drawn at
    random, so load from the other users of this shared machine, and the service's own
    periodic work, hit both alike."""
    a, b = [], []
    pair = [(first, a), (second, b)]
    for _ in range(n):
        random.shuffle(pair)
        for call, samples in pair:
            start = time.perf_counter()
            await call()
            samples.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b)


async def hook_cost(records: int, n: int) -> dict:
    body = json.dumps({"records": [EXAMPLE_RECORD] * records}).encode()
    answer = _predict_answer(records)

    async def work(request: Request) -> Response:
        await request.body()  # the real work reads the body too
        return JSONResponse(answer)

    answers = _answers(max_entries=n)  # new keys only: every call stores an answer
    keys = iter([uuid.uuid4().hex for _ in range(n)])

    async def direct() -> object:
        return await work(_request(body, None))

    async def keyed() -> object:
        return await answers.answer(_request(body, next(keys)), work)

    b, h = await _interleaved(direct, keyed, n)
    return {
        "records": records,
        "body_bytes": len(body),
        "without_key_us": round(b * 1e6, 2),
        "with_key_us": round(h * 1e6, 2),
        "hook_us": round((h - b) * 1e6, 2),
    }


async def predict_cost(model_dir: Path, db: Path, n: int) -> dict:
    # The drift monitor recomputes every 100 rows on its own thread; that periodic GIL load
    # would land on whichever variant made the 100th row. Kept out: its cost is not the hook's.
    settings = Settings(
        model_dir=model_dir, prediction_db=db, drift_recompute_every=10**9, drift_interval_s=3600
    )
    os.environ["OTEL_SDK_DISABLED"] = "true"
    app = model_service.create_app(settings, build_telemetry("model-service"))
    configure_logging(level="WARNING")
    body = {"record": EXAMPLE_RECORD}
    keys = iter([uuid.uuid4().hex for _ in range(n)])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://model") as client:

            async def plain() -> object:
                return (await client.post("/predict", json=body)).raise_for_status()

            async def keyed() -> object:
                headers = {"idempotency-key": next(keys)}
                return (
                    await client.post("/predict", json=body, headers=headers)
                ).raise_for_status()

            a, k = await _interleaved(plain, keyed, n)
    return {
        "without_key_us": round(a * 1e6, 1),
        "with_key_us": round(k * 1e6, 1),
        "overhead_pct": round((k - a) / a * 100, 1),
    }


async def memory_per_entry(entries: int) -> dict:
    answers = _answers(max_entries=entries)
    bodies = [json.dumps(_predict_answer(1)).encode() for _ in range(entries)]
    keys = [str(uuid.uuid4()) for _ in range(entries)]
    fingerprints = [hashlib.blake2b(raw, digest_size=16).digest() for raw in bodies]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for key, raw, fingerprint in zip(keys, bodies, fingerprints, strict=True):
        response = Response(raw, media_type="application/json")

        async def work(response: Response = response) -> Response:
            return response

        await answers.once(key, fingerprint, work)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    # Keys, bodies and fingerprints existed before, so the growth is the map's own overhead
    # per entry; in the service those objects would be garbage without the map, which is
    # why the map counts key and body bytes on top of this overhead.
    per_entry = grown / entries
    return {
        "entries": entries,
        "answer_body_bytes": len(bodies[0]),
        "traced_growth_per_entry_bytes": round(per_entry),
        "counted_per_entry_bytes": len(keys[0]) + len(bodies[0]) + ENTRY_OVERHEAD_BYTES,
    }


async def main_async(args: argparse.Namespace) -> dict:
    n = 500 if args.quick else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        train_and_save(model_dir)
        predict = await predict_cost(model_dir, Path(tmp) / "p.db", n // 2)
    return {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "hook": [await hook_cost(1, n), await hook_cost(BATCH, n // 10)],
        "predict_single_record": predict,
        "memory": await memory_per_entry(2000 if args.quick else 20_000),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results/idempotency.json"
    )
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    for row in result["hook"]:
        print(
            f"hook, {row['records']:3d} record(s), {row['body_bytes']:6d} B body: "
            f"{row['without_key_us']:8.1f} µs without key, {row['with_key_us']:8.1f} µs with "
            f"-> {row['hook_us']:6.1f} µs"
        )
    p = result["predict_single_record"]
    print(
        f"POST /predict in-process: {p['without_key_us']:.0f} µs without key, "
        f"{p['with_key_us']:.0f} µs with a new key ({p['overhead_pct']:+.1f} %)"
    )
    m = result["memory"]
    print(
        f"memory: {m['traced_growth_per_entry_bytes']} B traced per stored answer "
        f"({m['answer_body_bytes']} B body); the map counts {m['counted_per_entry_bytes']} B"
    )
    if not args.quick:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
