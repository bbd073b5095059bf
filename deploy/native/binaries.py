"""Where the natively built Go programs are (collector, Jaeger, Prometheus, Alertmanager,
VictoriaLogs).

Looked up in this order: the environment variable (``OTELCOL_BIN``, ...); the ``KEY=path``
lines of ``deploy/build-all.sh --print`` (paths keyed by the pinned build manifests, so a
stale build is never picked when the current one exists); ``paths.env`` in the build cache
(written by the last build, for machines without Go); the program's name on PATH.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from . import REPO

# KEY -> program name on PATH.
PROGRAMS = {
    "OTELCOL_BIN": "modelobs-otelcol",
    "JAEGER_BIN": "jaeger",
    "PROMETHEUS_BIN": "prometheus",
    "PROMTOOL_BIN": "promtool",
    "ALERTMANAGER_BIN": "alertmanager",
    "VICTORIALOGS_BIN": "victoria-logs",
}
# What the stack runs (promtool is only for checks and tests).
STACK_KEYS = ("OTELCOL_BIN", "JAEGER_BIN", "PROMETHEUS_BIN", "ALERTMANAGER_BIN", "VICTORIALOGS_BIN")


class BinariesMissing(RuntimeError):
    """Some programs are not built; the message says how to build them."""


def parse_key_values(text: str) -> dict[str, str]:
    """``KEY=value`` lines (build-all.sh --print, paths.env); quotes stripped."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        value = value.strip().strip("'\"")
        if sep and value:
            found[key] = value
    return found


@functools.cache
def _from_build_all() -> dict[str, str]:
    try:
        out = subprocess.run(
            ["bash", str(REPO / "deploy" / "build-all.sh"), "--print"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_key_values(out)


def _from_paths_env() -> dict[str, str]:
    cache = Path(os.environ.get("MODELOBS_CACHE") or Path.home() / ".cache" / "modelobs")
    try:
        return parse_key_values((cache / "bin" / "paths.env").read_text())
    except OSError:
        return {}


def _executable(path: str | None) -> bool:
    return bool(path) and os.path.isfile(path) and os.access(path, os.X_OK)


def find_binary(key: str, name: str | None = None) -> str | None:
    """Path of the executable for ``key`` (e.g. ``PROMTOOL_BIN``; ``name`` on PATH, default
    from PROGRAMS), or None."""
    candidates = (
        lambda: os.environ.get(key),
        lambda: _from_build_all().get(key),
        lambda: _from_paths_env().get(key),
        lambda: shutil.which(name or PROGRAMS.get(key, "")),
    )
    for candidate in candidates:
        path = candidate()
        if _executable(path):
            return path
    return None


def missing_message(keys: Iterable[str]) -> str:
    names = ", ".join(f"{PROGRAMS.get(k, k)} ({k})" for k in keys)
    return (
        f"native binaries missing: {names}. Build them with `make binaries` "
        "(deploy/build-all.sh, cached in ~/.cache/modelobs/bin), or set the variable to a "
        "binary's path."
    )


def find_binaries(keys: Iterable[str] = STACK_KEYS) -> dict[str, str]:
    """Every ``key`` -> path; raises BinariesMissing naming what is missing."""
    found = {key: find_binary(key) for key in keys}
    missing = [key for key, path in found.items() if path is None]
    if missing:
        raise BinariesMissing(missing_message(missing))
    return {key: path for key, path in found.items() if path}
