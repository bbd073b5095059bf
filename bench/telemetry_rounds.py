"""Bare, full, and full as another checkout of modelobs runs it, side by side in interleaved
rounds: the comparison a one-shot run of bench/telemetry_overhead.py cannot make on a shared
host, where one 20 s fixed-rate run moves with the neighbours.

    git worktree add /tmp/before <commit>    # the code to compare against
    python bench/telemetry_rounds.py --before /tmp/before --rate 258 --rounds 6 --seconds 12
    python bench/telemetry_rounds.py --before /tmp/before --saturation --rounds 6 --seconds 8
    python bench/telemetry_rounds.py --gateway --rate 113 --rounds 6 --seconds 12
    python bench/telemetry_rounds.py --gateway --split --saturation --rounds 6 --seconds 8

The model service three ways (bare: OTEL_SDK_DISABLED; full; full with ``--before``'s
``service/`` first on PYTHONPATH; without ``--before``, bare and full only), each its own
process pinned to CPU 0 (with ``--gateway``: a gateway → model pair, both on CPU 0, the
CPU figures the pair's sum and each process's part; ``--split`` adds bare and full pairs
whose model service runs on CPU 1, so that neither process shares its core with the other),
the collector, Jaeger, the log store and the load tool on CPU 1 (as
bench/telemetry_overhead.py). Each round runs every setup in turn, the order reversed every
other round. With ``--rate``: vegeta at
that fixed rate, p50/p99/p99.9 and the cores kept busy; with ``--saturation``: wrk, requests
per second and CPU µs per request. Medians over rounds, and each round's p99 (or CPU).
Figures go to bench/results/telemetry_rounds.json (``--name`` for another file).
"""

from __future__ import annotations

import argparse
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

# What each of a setup's parts is, in build_setups' order (a pair: model service, gateway).
PART_ROLES = ("model service", "gateway")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="a checkout to compare")
    parser.add_argument("--gateway", action="store_true", help="gateway → model pairs")
    parser.add_argument(
        "--split",
        action="store_true",
        help="with --gateway: bare and full pairs once more with the model service on CPU 1 "
        "(with the backends and the load tool), so that neither process shares its core with "
        "the other; read their CPU per process, not their throughput",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one more setup: full with these environment variables (repeatable)",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--rate", type=float, help="fixed request rate, per second")
    mode.add_argument("--saturation", action="store_true", help="wrk, 16 connections")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument(
        "--name", default="telemetry_rounds", help="results file: bench/results/<name>.json"
    )
    args = parser.parse_args()
    if args.split and not args.gateway:
        parser.error("--split needs --gateway")
    setups: dict[str, dict[str, str]] = {"bare": overhead.BARE}
    if args.before:
        before_service = (args.before / "service").resolve()
        if not (before_service / "modelobs").is_dir():
            parser.error(f"--before {args.before}: no service/modelobs in it")
        setups["full before"] = {"PYTHONPATH": str(before_service)}
    setups["full"] = {}
    if args.variant:
        setups["full variant"] = dict(v.split("=", 1) for v in args.variant)
    if args.split:
        own_cores = {f"{name}, own cores": dict(setups[name]) for name in ("bare", "full")}
        setups |= own_cores
    else:
        own_cores = {}
    overhead.ensure_vegeta()
    bins = find_binaries()
    run_dir = Path(tempfile.mkdtemp(prefix="modelobs-rounds-"))
    ports, extra = native.Ports.free(extra=len(setups))
    cfg = native.StackConfig(
        run_dir=run_dir, ports=ports, load_max_seconds=0, ready_timeout_s=300.0
    )
    backends = overhead.backend_parts(cfg, bins, pin=True)
    kind = "gateway" if args.gateway else "model"
    variants = [(name, kind, env, 1) for name, env in setups.items()]
    built = overhead.build_setups(variants, extra, cfg, pin=False)
    parts, names = list(backends), {}
    for name, setup in built.items():
        # CPU 0, but for an own-cores setup's model service (its first part): CPU 1.
        for part in setup.parts:
            own = name in own_cores and part is setup.parts[0]
            part.argv = overhead.pinned(1 if own else 0, part.argv)
        parts += setup.parts
        # Each setup's processes, by component name → role, and the URL the load goes to.
        roles = dict(
            zip((p.name for p in setup.parts), PART_ROLES[: len(setup.parts)], strict=True)
        )
        names[name] = (roles, overhead.setup_url(cfg, setup))
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
                roles, url = names[name]
                processes = [running[tag] for tag in roles]
                cpu_before = overhead.cpu_by_process(processes)
                if args.saturation:
                    run = overhead.wrk(url, script, args.seconds, 16)
                else:
                    run = overhead.fixed_rate(url, body, args.rate, args.seconds, run_dir / "v")
                used = {
                    tag: seconds - cpu_before[tag]
                    for tag, seconds in overhead.cpu_by_process(processes).items()
                }
                cpu = sum(used.values())
                requests = max(run["requests"], 1)
                run["busy_cores"] = cpu / args.seconds
                run["cpu_us_per_request"] = cpu / requests * 1e6
                # Which process pays what (a pair: the gateway and its model service).
                run["cpu_us_per_request_by_process"] = {
                    roles[tag]: seconds / requests * 1e6 for tag, seconds in used.items()
                }
                runs[name].append(run)
                by_process = "  ".join(
                    f"{role} {us:.0f}" for role, us in run["cpu_us_per_request_by_process"].items()
                )
                print(
                    f"round {r + 1}/{args.rounds}  {name:<16} p50 {run['p50_ms']:7.2f} ms  "
                    f"p99 {run['p99_ms']:7.2f} ms  CPU {run['cpu_us_per_request']:6.0f} µs/request"
                    f" ({by_process})  busy {run['busy_cores']:.2f}",
                    flush=True,
                )
    finally:
        stack.stop(say=lambda _m: None)
    keys = ("rps", "p50_ms", "p99_ms", "cpu_us_per_request", "busy_cores")
    summary = {
        name: {
            **{k: statistics.median(run[k] for run in rs) for k in keys if k in rs[0]},
            "cpu_us_per_request_by_process": {
                role: statistics.median(run["cpu_us_per_request_by_process"][role] for run in rs)
                for role in rs[0]["cpu_us_per_request_by_process"]
            },
            "p99_ms_by_round": [run["p99_ms"] for run in rs],
        }
        for name, rs in runs.items()
    }
    for name, s in summary.items():
        print(
            f"{name:<16} p99 {s['p99_ms']:7.2f} ms "
            f"(rounds {[round(p, 1) for p in s['p99_ms_by_round']]})"
            f"  CPU {s['cpu_us_per_request']:6.0f} µs/request ("
            + "  ".join(f"{r} {us:.0f}" for r, us in s["cpu_us_per_request_by_process"].items())
            + ")"
        )
    out = write_results(
        args.name,
        {
            "commit": overhead.git_commit(),
            "before": str(args.before) if args.before else None,
            "setup": "gateway → model pair" if args.gateway else "model service",
            "split_cores": args.split,
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
