"""Start the real `modelobs` services as subprocesses, from the native stack's own component
definitions and supervisor, and wait until they are ready."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from deploy.native.components import SPECS, Ports, StackConfig, resolve
from deploy.native.readiness import wait_ready
from deploy.native.supervisor import Supervisor

MODELOBS = str(Path(sys.executable).with_name("modelobs"))

__all__ = ["MODELOBS", "service_pair", "wait_ready"]


def _quiet(_message: str) -> None:
    pass


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
