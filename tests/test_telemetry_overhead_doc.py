"""bench/README.md's telemetry-overhead tables are the committed results, as the benchmarks
print them (bench/telemetry_overhead.py --tables, bench/request_instructions.py --table)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _bench(name: str = "telemetry_overhead"):
    if str(REPO / "bench") not in sys.path:  # the script's sibling modules (results_file)
        sys.path.insert(0, str(REPO / "bench"))
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_the_readme_quotes_the_committed_run() -> None:
    figures = json.loads((REPO / "bench" / "results" / "telemetry_overhead.json").read_text())
    tables = _bench().markdown_tables(figures)
    readme = (REPO / "bench" / "README.md").read_text()
    assert tables in readme
    # The peer and ours were measured in the same run, against the same bare setups.
    summary = figures["summary"]
    for kind in ("model", "gateway→model"):
        for impl in ("peer", "full"):
            assert summary[f"{kind} {impl}"]["baseline"] == f"{kind} bare"
    assert f"commit `{figures['commit']}`" in readme


def test_the_readme_quotes_the_committed_instruction_counts() -> None:
    figures = json.loads((REPO / "bench" / "results" / "request_instructions.json").read_text())
    readme = (REPO / "bench" / "README.md").read_text()
    assert _bench("request_instructions").markdown_table(figures) in readme
    # Each setup's ratio is against the bare setup of the same app.
    setups = figures["setups"]
    assert setups["full"]["above_bare"] == (
        setups["full"]["instructions_per_request"] - setups["bare"]["instructions_per_request"]
    )
    assert setups["gateway full"]["above_bare"] == (
        setups["gateway full"]["instructions_per_request"]
        - setups["gateway bare"]["instructions_per_request"]
    )
