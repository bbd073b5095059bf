"""Helpers for tests that run against either store: real model-service processes sharing
one store, and what the store holds afterwards (read through the store's own feeds)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from opentelemetry.sdk.metrics import MeterProvider

from modelobs.monitoring.store import PredictionRow, open_store
from modelobs.settings import Settings

from .processes import MODELOBS, wait_ready
from .servers import free_port


def stored(db: str, feed: str = "predictions_after") -> list[PredictionRow]:
    """Every row of one feed, oldest first."""
    store = open_store(Settings(prediction_db=db), MeterProvider().get_meter("t"))
    store.start()
    try:
        out: list[PredictionRow] = []
        cursor = 0
        while True:
            rows, cursor = getattr(store, feed)(cursor, 5000)
            if not rows:
                return out
            out += rows
    finally:
        store.stop()


def model_env(db: str, model_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "OTEL_SDK_DISABLED": "true",
        "MODELOBS_MODEL_DIR": str(model_dir),
        "MODELOBS_PREDICTION_DB": db,
        **extra,
    }


@contextmanager
def model_process(env: dict[str, str], log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """One real ``modelobs serve model``; yields its URL and process; killed if still up."""
    port = free_port()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [MODELOBS, "serve", "model", "--port", str(port)], env=env, stdout=fh, stderr=fh
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(f"{url}/readyz", proc, log)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def model_replicas(n: int, env: dict[str, str], workdir: Path) -> Iterator[list[str]]:
    """``n`` model-service processes sharing ``env``'s store; yields their URLs."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(model_process(env, workdir / f"replica-{i}.log"))[0]
            for i in range(n)
        ]
