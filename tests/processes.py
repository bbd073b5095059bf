"""Start the real `modelobs` services as subprocesses and wait until they are ready."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

MODELOBS = str(Path(sys.executable).with_name("modelobs"))


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout_s}s:\n{log.read_text()[-3000:]}")


@contextmanager
def service_pair(
    workdir: Path, env: Mapping[str, str], model_dir: Path, model_port: int, gateway_port: int
) -> Iterator[str]:
    """Model service and gateway as real processes; yields the gateway URL."""
    base = {
        **os.environ,
        **env,
        "MODELOBS_MODEL_DIR": str(model_dir),
        "MODELOBS_PREDICTION_DB": str(workdir / "predictions.db"),
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for app, port, extra in (
            ("model", model_port, []),
            ("gateway", gateway_port, ["--model-url", f"http://127.0.0.1:{model_port}"]),
        ):
            log = workdir / f"{app}.log"
            with open(log, "wb") as fh:
                proc = subprocess.Popen(
                    [MODELOBS, "serve", app, "--port", str(port), *extra],
                    env=base,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                )
            procs.append(proc)
            wait_ready(f"http://127.0.0.1:{port}/readyz", proc, log)
        yield f"http://127.0.0.1:{gateway_port}"
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
