"""Bare, full, and full as another checkout of modelobs runs it, side by side in interleaved
rounds: the comparison a one-shot run of bench/telemetry_overhead.py cannot make on a shared
host, where one 20 s fixed-rate run moves with the neighbours.

    git worktree add /tmp/before <commit>    # the code to compare against
    python bench/telemetry_rounds.py --before /tmp/before --rate 258 --rounds 6 --seconds 12
    python bench/telemetry_rounds.py --before /tmp/before --saturation --rounds 6 --seconds 8

The model service three ways (bare: OTEL_SDK_DISABLED; full; full with ``--before``'s
``service/`` first on PYTHONPATH), each its own process pinned to CPU 0, the collector,
Jaeger, the log store and the load tool on CPU 1 (as bench/telemetry_overhead.py). Each round
runs every setup in turn, the order reversed every other round. With ``--rate``: vegeta at
that fixed rate, p50/p99/p99.9 and the cores kept busy; with ``--saturation``: wrk, requests
per second and CPU µs per request. Medians over rounds, and each round's p99 (or CPU).
Figures go to bench/results/telemetry_rounds.json.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from deploy.native import components as native  # noqa: E402
from deploy.native.binaries import find_binaries  # noqa: E402
from deploy.native.supervisor import Supervisor  # noqa: E402

import telemetry_overhead as overhead  # noqa: E402
from results_file import write_results  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout to compare")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--rate", type=float, help="fixed request rate, per second")
    mode.add_argument("--saturation", action="store_true", help="wrk, 16 connections")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=12.0)
    args = parser.parse_args()
    before_service = (args.before / "service").resolve()
    if not (before_service / "modelobs").is_dir():
        parser.error(f"--before {args.before}: no service/modelobs in it")
    setups = {
        "bare": overhead.BARE,
        "full before": {"PYTHONPATH": str(before_service)},
        "full": {},
    }
    overhead.ensure_vegeta()
    bins = find_binaries()
    run_dir = Path(tempfile.mkdtemp(prefix="modelobs-rounds-"))
    ports, extra = native.Ports.free(extra=len(setups))
    cfg = native.StackConfig(
        run_dir=run_dir, ports=ports, load_max_seconds=0, ready_timeout_s=300.0
    )
    backends = [
        native.resolve(native.SPECS[n], cfg, bins) for n in ("victorialogs", "otelcol", "jaeger")
    ]
    for part in backends:
        part.argv = overhead.pinned(1, part.argv)
    parts, names = list(backends), {}
    for (name, env), port in zip(setups.items(), extra, strict=True):
        tag = re.sub(r"[^a-z0-9]+", "-", name)
        spec = native.SPECS["model-service"]
        part = native.resolve(spec, cfg, name=tag, params={"port": str(port)}, env=env)
        part.argv = overhead.pinned(0, part.argv)
        parts.append(part)
        names[name] = (tag, cfg.url(port, "/predict"))
    overhead.WRK_CPU = 1
    body = run_dir / "body.json"
    body.write_text(overhead.BODY)
    script = run_dir / "post.lua"
    script.write_text(overhead.WRK_SCRIPT)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in setups}
    stack = Supervisor(run_dir)
    try:
        running = {record.name: record for record in stack.start(parts)}
        for _, url in names.values():
            overhead.wrk(url, script, 2, 16)  # warm up
        for r in range(args.rounds):
            for name in list(setups) if r % 2 == 0 else list(reversed(setups)):
                tag, url = names[name]
                cpu_before = overhead.cpu_seconds([running[tag]])
                if args.saturation:
                    run = overhead.wrk(url, script, args.seconds, 16)
                else:
                    run = overhead.fixed_rate(url, body, args.rate, args.seconds, run_dir / "v")
                cpu = overhead.cpu_seconds([running[tag]]) - cpu_before
                run["busy_cores"] = cpu / args.seconds
                run["cpu_us_per_request"] = cpu / max(run["requests"], 1) * 1e6
                runs[name].append(run)
                print(
                    f"round {r + 1}/{args.rounds}  {name:<12} p50 {run['p50_ms']:7.2f} ms  "
                    f"p99 {run['p99_ms']:7.2f} ms  CPU {run['cpu_us_per_request']:6.0f} µs/request"
                    f"  busy {run['busy_cores']:.2f}",
                    flush=True,
                )
    finally:
        stack.stop(say=lambda _m: None)
    keys = ("rps", "p50_ms", "p99_ms", "cpu_us_per_request", "busy_cores")
    summary = {
        name: {
            **{k: statistics.median(run[k] for run in rs) for k in keys if k in rs[0]},
            "p99_ms_by_round": [run["p99_ms"] for run in rs],
        }
        for name, rs in runs.items()
    }
    for name, s in summary.items():
        print(
            f"{name:<12} p99 {s['p99_ms']:7.2f} ms "
            f"(rounds {[round(p, 1) for p in s['p99_ms_by_round']]})"
            f"  CPU {s['cpu_us_per_request']:6.0f} µs/request"
        )
    out = write_results(
        "telemetry_rounds",
        {
            "commit": overhead.git_commit(),
            "before": str(args.before),
            "mode": "saturation" if args.saturation else f"fixed rate {args.rate:g}/s",
            "rounds": args.rounds,
            "seconds": args.seconds,
            "summary": summary,
        },
    )
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
