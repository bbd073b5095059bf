"""The natively built Prometheus tools (promtool, prometheus, ...) for the tests.

The look-up is deploy/native/binaries.py's (environment variable, build-all.sh --print,
paths.env, PATH). A missing binary is a test FAILURE with instructions, never a skip: rule
tests that silently do not run are worse than no tests.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
from deploy.native.binaries import find_binary, missing_message


def require_binary(key: str, name: str | None = None) -> str:
    """Path of the binary for ``key`` (e.g. PROMTOOL_BIN, ``name`` promtool); fails the test
    when it is missing."""
    path = find_binary(key, name)
    if path is None:
        pytest.fail(missing_message([key]), pytrace=False)
    return path


def otelcol_validate(config: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`otelcol validate --config=config` with only ``env`` (and PATH) in its environment."""
    return subprocess.run(
        [require_binary("OTELCOL_BIN", "modelobs-otelcol"), "validate", f"--config={config}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
        check=False,
    )
