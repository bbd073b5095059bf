"""The ``modelobs`` command: serving never imports the load generator (the service image
leaves it out), and ``modelobs load`` says so plainly where it is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelobs import cli

SERVE_BOTH_APPS = """
import importlib, json, sys
import uvicorn
from modelobs import cli

def run(target, factory, **options):  # what uvicorn does first: import the factory, call it
    module, _, name = target.partition(":")
    getattr(importlib.import_module(module), name)()

uvicorn.run = run
codes = [cli.main(["serve", app]) for app in ("model", "gateway", "monitor")]
print(json.dumps({"codes": codes, "modules": sorted(m for m in sys.modules if m.startswith("modelobs"))}))
"""

LOAD_WITHOUT_LOADGEN = """
import sys
sys.modules["modelobs.loadgen"] = None  # as in the service image: the package is not there
from modelobs import cli
sys.exit(cli.main(["load", "--requests", "1", "--quiet"]))
"""


def _python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "OTEL_SDK_DISABLED": "true",
        "MODELOBS_MODEL_DIR": str(tmp_path / "model"),
        "MODELOBS_PREDICTION_DB": str(tmp_path / "predictions.db"),
    }
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_serve_never_imports_the_load_generator(tmp_path: Path) -> None:
    done = _python(SERVE_BOTH_APPS, tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["codes"] == [0, 0, 0]
    modules = set(result["modules"])
    assert {
        "modelobs.apps.model_service",
        "modelobs.apps.gateway",
        "modelobs.apps.monitor",
    } <= modules
    assert not {m for m in modules if m.startswith("modelobs.loadgen")}


def test_load_without_the_load_generator_says_so(tmp_path: Path) -> None:
    done = _python(LOAD_WITHOUT_LOADGEN, tmp_path)
    assert done.returncode == 2
    assert "load generator is not installed" in done.stderr
    assert "Traceback" not in done.stderr


def test_load_names_the_scenarios_when_one_is_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["load", "--scenario", "nope", "--requests", "1", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "unknown scenario 'nope'" in error and "sudden-shift" in error
