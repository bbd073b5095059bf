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
import json
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

from collector_batching import TELEMETRYGEN, Stack, log_sink, telemetrygen, wait_stable

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


def run(bins: dict[str, str], config: Path, rate: int, seconds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, log_sink() as sink:
        stack = Stack(bins, config, Path(tmp), sink)
        stack.collector_env["TRACE_JOURNAL_RETENTION"] = "600s"
        try:
            stack.start("jaeger")
            stack.start("otelcol")
            cpu0 = stack.collector_cpu_s()
            telemetrygen("traces", stack.grpc, rate, seconds)
            accepted = stack.collector_metric("otelcol_receiver_accepted_spans")
            journal_bytes = stack.collector_metric("otelcol_processor_trace_journal_size")
            journaled = stack.collector_metric("otelcol_processor_trace_journal_journaled_spans")
            delivered, _ = wait_stable(stack.jaeger_accepted_spans, accepted)
            cpu = stack.collector_cpu_s() - cpu0
        finally:
            stack.stop()
    return {
        "spans_accepted": accepted,
        "delivered_share": delivered / accepted if accepted else 0.0,
        "cpu_s_per_10k_spans": cpu / accepted * 10_000 if accepted else float("nan"),
        "journal_bytes_per_span": journal_bytes / journaled if journaled else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", type=int, default=300, help="telemetrygen --rate (traces/s)")
    parser.add_argument("--seconds", type=int, default=15)
    args = parser.parse_args()
    if not TELEMETRYGEN.exists():
        sys.exit(f"{TELEMETRYGEN} missing: see bench/collector_batching.py's docstring")
    bins = find_binaries(("OTELCOL_BIN", "JAEGER_BIN"))
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        configs = variants(Path(tmp))
        for repeat in range(args.repeats):
            for name, config in configs.items():
                figures = run(bins, config, args.rate, args.seconds)
                print(f"run {repeat + 1} {name}: {figures}", flush=True)
                for key, value in figures.items():
                    results.setdefault(name, {}).setdefault(key, []).append(value)
    medians = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}
    spans_per_s = statistics.median(results["journal (shipped)"]["spans_accepted"]) / args.seconds
    print(f"\nmedians of {args.repeats} runs (about {spans_per_s:.0f} spans/s, {args.seconds} s):")
    keys = list(next(iter(medians.values())))
    print(f"{'':20}" + "".join(f"{k:>24}" for k in keys))
    for name, row in medians.items():
        print(f"{name:20}" + "".join(f"{row[k]:>24.3f}" for k in keys))
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(
        json.dumps({"args": vars(args), "runs": results, "medians": medians}, indent=2) + "\n"
    )
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
