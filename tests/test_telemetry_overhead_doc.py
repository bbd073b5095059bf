"""bench/README.md's telemetry-overhead tables are the committed results, as the benchmark
prints them (bench/telemetry_overhead.py --tables)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _bench():
    if str(REPO / "bench") not in sys.path:  # the script's sibling modules (results_file)
        sys.path.insert(0, str(REPO / "bench"))
    spec = importlib.util.spec_from_file_location(
        "telemetry_overhead", REPO / "bench" / "telemetry_overhead.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
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
