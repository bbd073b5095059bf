"""Find the natively built Prometheus tools (promtool, prometheus, ...) for the tests.

Order: the environment variable (e.g. PROMTOOL_BIN), then the KEY=path lines of
``deploy/build-all.sh --print`` (cache keyed by the build manifests), then
``${MODELOBS_CACHE:-~/.cache/modelobs}/bin/paths.env``, then PATH. A missing binary
is a test FAILURE with instructions, never a skip: rule tests that silently do not
run are worse than no tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _from_build_all(key: str) -> str | None:
    script = REPO / "deploy" / "build-all.sh"
    if not script.is_file():
        return None
    try:
        out = subprocess.run(
            ["bash", str(script), "--print"], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return _value(out, key)


def _from_paths_env(key: str) -> str | None:
    cache = Path(os.environ.get("MODELOBS_CACHE", Path.home() / ".cache" / "modelobs"))
    env_file = cache / "bin" / "paths.env"
    if not env_file.is_file():
        return None
    return _value(env_file.read_text(), key)


def _value(text: str, key: str) -> str | None:
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name == key and value:
            return value.strip().strip('"').strip("'")
    return None


def find_binary(key: str, name: str) -> str | None:
    """Path of an executable binary, or None. ``key`` is e.g. PROMTOOL_BIN, ``name`` promtool."""
    candidates = [
        os.environ.get(key),
        _from_build_all(key),
        _from_paths_env(key),
        shutil.which(name),
    ]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_binary(key: str, name: str) -> str:
    path = find_binary(key, name)
    if path is None:
        pytest.fail(
            f"{name} not found: set {key}=/path/to/{name}, or build it with "
            f"`deploy/build-all.sh prometheus` (writes ~/.cache/modelobs/bin/paths.env), "
            f"or put {name} on PATH",
            pytrace=False,
        )
    return path
