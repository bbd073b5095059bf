"""Start the real `modelobs` services as subprocesses, from the native stack's own component
definitions and supervisor, and wait until they are ready."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
from deploy.native.components import SPECS, Ports, StackConfig, resolve
from deploy.native.readiness import wait_ready
from deploy.native.supervisor import Process, Supervisor, SupervisorError

MODELOBS = str(Path(sys.executable).with_name("modelobs"))

__all__ = ["MODELOBS", "service_pair", "wait_ready"]


def _quiet(_message: str) -> None:
    pass


def start_or_fail(run_dir: Path, processes: list[Process], what: str) -> Supervisor:
    """Start ``processes`` in ``run_dir`` and wait for them, or fail the test saying why
    (a missing binary FAILS, never skips); prints how long the start took."""
    supervisor = Supervisor(run_dir)
    started = time.monotonic()
    try:
        supervisor.start(processes, say=_quiet)
    except (SupervisorError, LookupError) as exc:
        pytest.fail(f"the {what} did not start: {exc}", pytrace=False)
    print(f"\n{what} up in {time.monotonic() - started:.1f}s, run dir {run_dir}")
    return supervisor


@contextmanager
def service_pair(
    workdir: Path, env: Mapping[str, str], model_dir: Path, model_port: int, gateway_port: int
) -> Iterator[str]:
    """Model service and gateway as real processes; yields the gateway URL. ``env`` goes on
    top of the stack's service environment (point OTEL_EXPORTER_OTLP_ENDPOINT somewhere)."""
    cfg = StackConfig(run_dir=workdir, ports=Ports(model=model_port, gateway=gateway_port))
    extra = {
        **env,
        "MODELOBS_MODEL_DIR": str(model_dir),
        "MODELOBS_PREDICTION_DB": str(workdir / "predictions.db"),
    }
    supervisor = Supervisor(workdir)
    supervisor.start(
        [
            resolve(SPECS["model-service"], cfg, env=extra),
            resolve(SPECS["gateway"], cfg, env=extra),
        ],
        say=_quiet,
    )
    try:
        yield cfg.url(gateway_port)
    finally:
        supervisor.stop(say=_quiet)
