"""Benchmark: drift engine compute vs a per-feature scipy.stats.ks_2samp loop.

Same data, same method ('asymp'), interleaved repeats, medians. Statistics and p-values are
checked for exact equality before any timing is reported. Run from the repo root:

    .venv/bin/python bench/drift.py            # full run
    .venv/bin/python bench/drift.py --quick    # < 1 minute
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy
from scipy import stats

from modelobs.drift import DriftMonitor, DriftSettings, FeatureSpec

N_FEATURES = 30
WINDOW = 5000
REFERENCE = 10_000
STEP = 100  # rows between steady-state recomputations (DriftSettings.recompute_every)


def make_rows(values: np.ndarray, names: list[str]) -> list[dict[str, float]]:
    return [dict(zip(names, row, strict=True)) for row in values.tolist()]


def scipy_loop(ref: np.ndarray, win: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The baseline: one ks_2samp call per feature (what a straightforward engine does)."""
    d = np.empty(ref.shape[1])
    p = np.empty(ref.shape[1])
    for j in range(ref.shape[1]):
        r = stats.ks_2samp(ref[:, j], win[:, j], method="asymp")
        d[j], p[j] = r.statistic, r.pvalue
    return d, p


def engine_arrays(monitor: DriftMonitor) -> tuple[np.ndarray, np.ndarray]:
    feats = monitor.report().features
    return np.array([f.statistic for f in feats]), np.array([f.p_value for f in feats])


def run_scenario(
    name: str, shift: np.ndarray, repeats: int, rng: np.random.Generator
) -> dict[str, object]:
    names = [f"x{j}" for j in range(N_FEATURES)]
    specs = [FeatureSpec(n, "numeric") for n in names]
    ref = rng.normal(size=(REFERENCE, N_FEATURES))
    reference = {n: ref[:, j] for j, n in enumerate(names)}
    settings = DriftSettings(window_size=WINDOW, min_window=200, recompute_every=STEP)

    t_scipy: list[float] = []
    t_cold: list[float] = []
    t_warm: list[float] = []
    max_d = 0.0
    max_p = 0.0
    n_checked = 0
    for _ in range(repeats):
        data = rng.normal(size=(WINDOW + STEP, N_FEATURES)) + shift
        win_cold, win_warm = data[:WINDOW], data[STEP:]
        monitor = DriftMonitor(specs, reference, settings)  # reference prep not timed
        monitor.observe(make_rows(win_cold, names))

        # interleave: scipy, engine cold (every row ranked), engine steady state
        t0 = time.perf_counter()
        d_s, p_s = scipy_loop(ref, win_cold)
        t_scipy.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        monitor.compute()
        t_cold.append(time.perf_counter() - t0)
        d_e, p_e = engine_arrays(monitor)
        max_d = max(max_d, float(np.max(np.abs(d_e - d_s))))
        max_p = max(max_p, float(np.max(np.abs(p_e - p_s))))

        monitor.observe(make_rows(data[WINDOW:], names))  # STEP new rows slide the window
        t0 = time.perf_counter()
        monitor.compute()
        t_warm.append(time.perf_counter() - t0)
        d_s, p_s = scipy_loop(ref, win_warm)  # equality check only, not timed
        d_e, p_e = engine_arrays(monitor)
        max_d = max(max_d, float(np.max(np.abs(d_e - d_s))))
        max_p = max(max_p, float(np.max(np.abs(p_e - p_s))))
        n_checked += 2 * N_FEATURES

    if max_d != 0.0 or max_p != 0.0:
        sys.exit(f"{name}: statistics differ from scipy (max |dD|={max_d}, |dp|={max_p})")
    med = {
        k: statistics.median(v) for k, v in (("scipy", t_scipy), ("cold", t_cold), ("warm", t_warm))
    }
    return {
        "scenario": name,
        "drifted_features": int(np.count_nonzero(shift)),
        "repeats": repeats,
        "median_s": {
            "scipy_ks_2samp_loop": med["scipy"],
            "engine_cold": med["cold"],
            "engine_steady_state": med["warm"],
        },
        "speedup": {
            "cold": med["scipy"] / med["cold"],
            "steady_state": med["scipy"] / med["warm"],
        },
        "max_abs_diff": {"statistic": max_d, "p_value": max_p},
        "feature_results_compared": n_checked,
    }


def machine_info() -> dict[str, object]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, < 1 minute")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results/drift.json")
    args = parser.parse_args()
    repeats = args.repeats or (5 if args.quick else 21)
    rng = np.random.default_rng(args.seed)

    no_shift = np.zeros(N_FEATURES)
    some_shift = np.zeros(N_FEATURES)
    some_shift[:3] = 0.5  # 3 of 30 features shifted by 0.5 sd
    results = [
        run_scenario("no drift (window ~ reference)", no_shift, repeats, rng),
        run_scenario("3 of 30 features shifted by 0.5 sd", some_shift, repeats, rng),
    ]

    print(
        f"{N_FEATURES} numeric features, window {WINDOW}, reference {REFERENCE}, "
        f"ks method 'asymp', {repeats} interleaved repeats, median times"
    )
    header = (
        f"{'scenario':38} {'scipy loop':>11} {'engine cold':>12} {'engine steady':>14} "
        f"{'x cold':>7} {'x steady':>9} {'max|dD|':>8} {'max|dp|':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        m, s, diff = r["median_s"], r["speedup"], r["max_abs_diff"]
        print(
            f"{r['scenario']:38} {m['scipy_ks_2samp_loop'] * 1e3:9.2f}ms "
            f"{m['engine_cold'] * 1e3:10.2f}ms {m['engine_steady_state'] * 1e3:12.2f}ms "
            f"{s['cold']:6.1f}x {s['steady_state']:8.1f}x "
            f"{diff['statistic']:8.1g} {diff['p_value']:8.1g}"
        )

    payload = {
        "benchmark": "drift engine compute vs scipy.stats.ks_2samp loop",
        "command": " ".join(["python", "bench/drift.py", *sys.argv[1:]]),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "config": {
            "features": N_FEATURES,
            "window": WINDOW,
            "reference": REFERENCE,
            "steady_state_new_rows": STEP,
            "ks_method": "asymp",
            "repeats": repeats,
            "seed": args.seed,
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
