"""Benchmark: what the gateway's trace journal (otel-collector/components/tracejournal) costs.
Three variants of otel-collector/gateway.yaml, runs interleaved (1, 2, 3, 1, 2, 3, ...):
without trace_journal, as shipped (a plain write per batch, page cache), and with
`fsync: true` (one disk flush per batch).

Each run: telemetrygen sends traces (4 spans each) at a fixed rate through the real gateway
collector, tail sampling set to keep every trace, into the real Jaeger (bench/
collector_batching.py's Stack). Reported: collector CPU seconds per 10 000 spans, spans
delivered / accepted, and the journal's bytes per span on disk (retention raised for the
run so nothing is deleted before it is read).

Needs the native binaries (`make binaries`) and telemetrygen (see collector_batching.py).
Run: .venv/bin/python bench/trace_journal.py [--repeats 3] [--rate 300] [--seconds 15]
Figures go to bench/results/trace_journal.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import yaml

from collector_batching import TELEMETRYGEN, Stack, report, run_interleaved, run_traces

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from deploy.native.binaries import find_binaries  # noqa: E402

GATEWAY = REPO / "otel-collector" / "gateway.yaml"
OUT = REPO / "bench" / "results" / "trace_journal.json"


def variants(tmp: Path) -> dict[str, Path]:
    """The shipped gateway.yaml, and it without the journal and with fsync on."""
    without = yaml.safe_load(GATEWAY.read_text())
    del without["processors"]["trace_journal"]
    sampled = without["service"]["pipelines"]["traces/sampled"]
    sampled["processors"] = [p for p in sampled["processors"] if p != "trace_journal"]
    fsync = yaml.safe_load(GATEWAY.read_text())
    fsync["processors"]["trace_journal"]["fsync"] = True
    paths = {"no journal": tmp / "without.yaml", "journal + fsync": tmp / "fsync.yaml"}
    paths["no journal"].write_text(yaml.safe_dump(without, sort_keys=False))
    paths["journal + fsync"].write_text(yaml.safe_dump(fsync, sort_keys=False))
    return {"no journal": paths["no journal"], "journal (shipped)": GATEWAY} | {
        "journal + fsync": paths["journal + fsync"]
    }


def journal_bytes_per_span(stack: Stack) -> dict[str, float]:
    """The journal's size on disk over the spans it took (nothing deleted yet)."""
    size = stack.collector_metric("otelcol_processor_trace_journal_size")
    spans = stack.collector_metric("otelcol_processor_trace_journal_journaled_spans")
    return {"journal_bytes_per_span": size / spans if spans else 0.0}


def run(bins: dict[str, str], config: Path, rate: int, seconds: int) -> dict[str, float]:
    """collector_batching's traces run, with a retention nothing expires in."""
    figures = run_traces(
        bins,
        config,
        rate,
        seconds,
        env={"TRACE_JOURNAL_RETENTION": "600s"},
        after_load=journal_bytes_per_span,
    )
    del figures["drain_s"]  # measured by collector_batching.py; not what this compares
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", type=int, default=300, help="telemetrygen --rate")
    parser.add_argument("--seconds", type=int, default=15)
    args = parser.parse_args()
    if not TELEMETRYGEN.exists():
        sys.exit(f"{TELEMETRYGEN} missing: see bench/collector_batching.py's docstring")
    bins = find_binaries(("OTELCOL_BIN", "JAEGER_BIN"))
    with tempfile.TemporaryDirectory() as tmp:
        results = run_interleaved(
            variants(Path(tmp)),
            lambda config: run(bins, config, args.rate, args.seconds),
            args.repeats,
        )
    report(results, args, "journal (shipped)", OUT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
