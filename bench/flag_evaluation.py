"""The request-path cost of the fault flags: one OpenFeature evaluation with flagd's
in-process file provider (the SDK call itself, and through FaultFlags, which keeps an
evaluation for one poll interval), and a whole model-service prediction (three evaluations:
inference-latency, inference-errors, memory-leak, all off) with and without a flag file.

CPU time (time.process_time), the two variants interleaved in rounds so machine noise lands
on both. Writes bench/results/flag_evaluation.json.

    .venv/bin/python bench/flag_evaluation.py [--evaluations 20000] [--requests 2000]
"""

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

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from modelobs.apps import model_service
from modelobs.flags.client import FaultFlags
from modelobs.model.data import EXAMPLE_RECORD
from modelobs.model.train import train_and_save
from modelobs.settings import Settings
from modelobs.telemetry import build_telemetry
from modelobs.telemetry.logs import configure_logging
from results_file import write_results

ROUNDS = 20


def per_evaluation_us(evaluate: Callable[[], object], n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        evaluate()
    return (time.process_time() - start) / n * 1e6


async def predict_us(tmp: Path, model_dir: Path, n: int) -> dict[str, float]:
    os.environ["OTEL_SDK_DISABLED"] = "true"
    common = {"model_dir": model_dir, "drift_recompute_every": 10**9, "drift_interval_s": 3600}
    apps = {
        "without_flag_file": model_service.create_app(
            Settings(**common, prediction_db=tmp / "a.db"), build_telemetry("model-service")
        ),
        "with_flag_file": model_service.create_app(
            Settings(**common, prediction_db=tmp / "b.db", flags_file=tmp / "flags.json"),
            build_telemetry("model-service"),
        ),
    }
    configure_logging(level="WARNING")
    per_round: dict[str, list[float]] = {name: [] for name in apps}
    body = {"record": EXAMPLE_RECORD}
    async with (
        apps["without_flag_file"].router.lifespan_context(apps["without_flag_file"]),
        apps["with_flag_file"].router.lifespan_context(apps["with_flag_file"]),
    ):
        clients = {
            name: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m")
            for name, app in apps.items()
        }
        for client in clients.values():  # warm up
            for _ in range(50):
                (await client.post("/predict", json=body)).raise_for_status()
        for _ in range(ROUNDS):
            for name, client in clients.items():
                start = time.process_time()
                for _ in range(n // ROUNDS):
                    (await client.post("/predict", json=body)).raise_for_status()
                per_round[name].append((time.process_time() - start) / (n // ROUNDS) * 1e6)
        for client in clients.values():
            await client.aclose()
    paired = [
        b - a
        for a, b in zip(per_round["without_flag_file"], per_round["with_flag_file"], strict=True)
    ]
    return {
        **{name: round(statistics.median(v), 1) for name, v in per_round.items()},
        "flag_cost_us": round(statistics.median(paired), 1),
        "flag_cost_round_spread_us": [round(min(paired), 1), round(max(paired), 1)],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evaluations", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=2_000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="flag-bench-"))
    model_dir = tmp / "model"
    train_and_save(model_dir)
    with_file = FaultFlags(tmp / "eval-flags.json")
    without = FaultFlags(None)
    sdk_client = with_file._client
    assert sdk_client is not None
    off = {"share": 0.0, "delay_ms": 0}
    n = args.evaluations
    evaluation = {
        "openfeature_sdk_call_us": round(
            per_evaluation_us(lambda: sdk_client.get_object_details("inference-latency", off), n),
            2,
        ),
        "fault_flags_kept_us": round(
            per_evaluation_us(lambda: with_file.evaluate("inference-latency"), n), 2
        ),
        "no_flag_file_us": round(
            per_evaluation_us(lambda: without.evaluate("inference-latency"), n), 2
        ),
    }
    with_file.close()
    predict = asyncio.run(predict_us(tmp, model_dir, args.requests))
    predict["flag_cost_pct"] = round(
        predict["flag_cost_us"] / predict["without_flag_file"] * 100, 1
    )
    figures = {"evaluation_cpu_us": evaluation, "predict_cpu_us": predict}
    print(f"one evaluation (CPU µs): {evaluation}")
    print(f"POST /predict, 3 evaluations each (CPU µs per request): {predict}")
    print(f"wrote {write_results('flag_evaluation', figures)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
