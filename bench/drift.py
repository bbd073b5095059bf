"""Benchmark: drift engine compute vs a per-feature scipy.stats.ks_2samp loop.

Same data, same method ('asymp'), interleaved repeats, medians. Before any timing is
reported, statistics are checked for exact equality and p-values for a relative difference
<= KS_PVALUE_RTOL (1e-12; most are bit-identical, the count is printed). Run from the
repo root:

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
from collections import Counter
from pathlib import Path

import numpy as np
import scipy
from scipy import stats

from modelobs.monitoring.drift import DriftMonitor, DriftSettings, FeatureSpec
from modelobs.monitoring.drift.ks_pvalue import KS_PVALUE_RTOL, PATHS, KsPValueCache

N_FEATURES = 30
WINDOW = 5000
REFERENCE = 10_000
STEP = 100  # rows between steady-state recomputations (DriftSettings.recompute_every)


def make_rows(values: np.ndarray, names: list[str]) -> list[dict[str, float]]:
    return [dict(zip(names, row, strict=True)) for row in values.tolist()]


def scipy_pvalue_part(d: np.ndarray, n1: int, n2: int) -> float:
    """Seconds scipy's loop spends on p-values alone: the kstwo.sf call ks_2samp makes."""
    en = np.round(max(n1, n2) * min(n1, n2) / (n1 + n2))
    t0 = time.perf_counter()
    for v in d:
        np.clip(stats.kstwo.sf(v, en), 0, 1)
    return time.perf_counter() - t0


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


def setup(
    rng: np.random.Generator,
) -> tuple[list[str], list[FeatureSpec], np.ndarray, dict[str, np.ndarray], DriftSettings]:
    names = [f"x{j}" for j in range(N_FEATURES)]
    specs = [FeatureSpec(n, "numeric") for n in names]
    ref = rng.normal(size=(REFERENCE, N_FEATURES))
    reference = {n: ref[:, j] for j, n in enumerate(names)}
    settings = DriftSettings(window_size=WINDOW, min_window=200, recompute_every=STEP)
    return names, specs, ref, reference, settings


class Diff:
    """Largest |engine - scipy| seen for the statistic and the p-value (absolute and
    relative), and how many p-values were bit-identical."""

    def __init__(self) -> None:
        self.d = 0.0
        self.p = 0.0
        self.p_rel = 0.0
        self.p_identical = 0
        self.compared = 0

    def update(self, monitor: DriftMonitor, d_s: np.ndarray, p_s: np.ndarray) -> None:
        d_e, p_e = engine_arrays(monitor)
        self.d = max(self.d, float(np.max(np.abs(d_e - d_s))))
        err = np.abs(p_e - p_s)
        self.p = max(self.p, float(np.max(err)))
        rel = np.where(err == 0, 0.0, err / np.where(p_s == 0, 1.0, np.abs(p_s)))
        self.p_rel = max(self.p_rel, float(np.max(rel)))
        self.p_identical += int(np.count_nonzero(err == 0))
        self.compared += d_e.size


def path_table(paths: Counter[str]) -> dict[str, int]:
    """How the engine's p-values were computed (see ks_pvalue.kstwo_sf), every path named."""
    return {k: paths[k] for k in PATHS}


def run_cold(name: str, shift: np.ndarray, repeats: int, rng: np.random.Generator) -> dict:
    """Fresh monitor each repeat: every window row is ranked, the p-value memo is empty."""
    names, specs, ref, reference, settings = setup(rng)
    t_scipy: list[float] = []
    t_engine: list[float] = []
    t_scipy_p: list[float] = []
    t_engine_p: list[float] = []
    diff = Diff()
    paths: Counter[str] = Counter()
    for _ in range(repeats):
        win = rng.normal(size=(WINDOW, N_FEATURES)) + shift
        # reference prep not timed; a fresh (empty) p-value memo each time
        monitor = DriftMonitor(specs, reference, settings, ks_pvalues=KsPValueCache(paths=paths))
        monitor.observe(make_rows(win, names))
        time_side_by_side(monitor, ref, win, t_scipy, t_engine, t_scipy_p, t_engine_p, diff)
    out = summarise(name, "cold", shift, repeats, t_scipy, t_engine, diff, None)
    out["p_value_paths"] = path_table(paths)
    return split(out, t_scipy, t_engine, t_scipy_p, t_engine_p)


def time_side_by_side(
    monitor: DriftMonitor,
    ref: np.ndarray,
    win: np.ndarray,
    t_scipy: list[float],
    t_engine: list[float],
    t_scipy_p: list[float],
    t_engine_p: list[float],
    diff: Diff,
) -> None:
    """One measurement: the scipy loop, then the engine, on the same window; both checked."""
    t0 = time.perf_counter()
    d_s, p_s = scipy_loop(ref, win)
    t_scipy.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    monitor.compute()
    t_engine.append(time.perf_counter() - t0)
    t_engine_p.append(monitor.last_compute_seconds["ks_p_values"])
    t_scipy_p.append(scipy_pvalue_part(d_s, REFERENCE, WINDOW))
    diff.update(monitor, d_s, p_s)


def split(
    out: dict,
    t_scipy: list[float],
    t_engine: list[float],
    t_scipy_p: list[float],
    t_engine_p: list[float],
) -> dict:
    """Decompose: the p-value is the same scipy function on both sides (kstwo.sf); the
    rest is what the engine changes (ranking, ECDF comparison, PSI, per-call overhead)."""
    rest_s = statistics.median([a - b for a, b in zip(t_scipy, t_scipy_p, strict=True)])
    rest_e = statistics.median([a - b for a, b in zip(t_engine, t_engine_p, strict=True)])
    out["p_value_part_s"] = {
        "scipy": statistics.median(t_scipy_p),
        "engine": statistics.median(t_engine_p),
    }
    out["without_p_values"] = {"scipy_s": rest_s, "engine_s": rest_e, "speedup": rest_s / rest_e}
    return out


def run_stream(name: str, shift: np.ndarray, steps: int, rng: np.random.Generator) -> dict:
    """The service's steady state: a full window slides by STEP rows between computes."""
    names, specs, ref, reference, settings = setup(rng)
    data = rng.normal(size=(WINDOW + steps * STEP, N_FEATURES)) + shift
    paths: Counter[str] = Counter()
    memo = KsPValueCache(paths=paths)
    monitor = DriftMonitor(specs, reference, settings, ks_pvalues=memo)
    monitor.observe(make_rows(data[:WINDOW], names))
    monitor.compute()  # initial fill, not timed
    paths.clear()
    t_scipy: list[float] = []
    t_engine: list[float] = []
    t_scipy_p: list[float] = []
    t_engine_p: list[float] = []
    diff = Diff()
    hits0, misses0 = memo.hits, memo.misses
    for k in range(1, steps + 1):
        monitor.observe(make_rows(data[WINDOW + (k - 1) * STEP : WINDOW + k * STEP], names))
        win = data[k * STEP : WINDOW + k * STEP]
        time_side_by_side(monitor, ref, win, t_scipy, t_engine, t_scipy_p, t_engine_p, diff)
    lookups = memo.hits - hits0 + memo.misses - misses0
    hit_rate = (memo.hits - hits0) / lookups if lookups else 0.0
    out = summarise(name, "steady", shift, steps, t_scipy, t_engine, diff, hit_rate)
    out["p_value_paths"] = path_table(paths)  # memo misses only
    return split(out, t_scipy, t_engine, t_scipy_p, t_engine_p)


def summarise(
    name: str,
    mode: str,
    shift: np.ndarray,
    repeats: int,
    t_scipy: list[float],
    t_engine: list[float],
    diff: Diff,
    hit_rate: float | None,
) -> dict:
    if diff.d != 0.0 or diff.p_rel > KS_PVALUE_RTOL:
        sys.exit(
            f"{name}/{mode}: results differ from scipy (|dD|={diff.d}, "
            f"relative |dp|={diff.p_rel} > {KS_PVALUE_RTOL})"
        )
    m_s, m_e = statistics.median(t_scipy), statistics.median(t_engine)
    return {
        "scenario": name,
        "mode": mode,
        "drifted_features": int(np.count_nonzero(shift)),
        "repeats": repeats,
        "median_s": {"scipy_ks_2samp_loop": m_s, "engine_compute": m_e},
        "speedup": m_s / m_e,
        "pvalue_memo_hit_rate": hit_rate,
        "max_abs_diff": {"statistic": diff.d, "p_value": diff.p},
        "max_rel_diff_p_value": diff.p_rel,
        "p_values_bit_identical": diff.p_identical,
        "feature_results_compared": diff.compared,
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
    global N_FEATURES, WINDOW, REFERENCE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, < 1 minute")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--features", type=int, default=N_FEATURES)
    parser.add_argument("--window", type=int, default=WINDOW)
    parser.add_argument("--reference", type=int, default=REFERENCE)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results/drift.json")
    args = parser.parse_args()
    N_FEATURES, WINDOW, REFERENCE = args.features, args.window, args.reference
    repeats = args.repeats or (5 if args.quick else 15)
    rng = np.random.default_rng(args.seed)

    no_shift = np.zeros(N_FEATURES)
    some_shift = np.zeros(N_FEATURES)
    some_shift[:3] = 0.5  # 3 of 30 features shifted by 0.5 sd
    quiet, drift = "no drift", "3/30 features +0.5 sd"
    steps = repeats * 3
    results = [
        run_cold(quiet, no_shift, repeats, rng),
        run_cold(drift, some_shift, repeats, rng),
        run_stream(quiet, no_shift, steps, rng),
        run_stream(drift, some_shift, steps, rng),
    ]

    print(
        f"{N_FEATURES} numeric features, window {WINDOW}, reference {REFERENCE}, "
        f"ks_2samp method='asymp'; cold: {repeats} fresh windows, steady: {steps} slides "
        f"of {STEP} rows; medians of interleaved runs"
    )
    header = (
        f"{'scenario':24} {'mode':7} {'scipy loop':>11} {'engine':>10} {'speedup':>8} "
        f"{'memo hits':>9} {'max|dD|':>8} {'rel|dp|':>8} {'p ==':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        m = r["median_s"]
        hits = r["pvalue_memo_hit_rate"]
        print(
            f"{r['scenario']:24} {r['mode']:7} {m['scipy_ks_2samp_loop'] * 1e3:9.2f}ms "
            f"{m['engine_compute'] * 1e3:8.2f}ms {r['speedup']:7.1f}x "
            f"{'-' if hits is None else f'{hits:.0%}':>9} "
            f"{r['max_abs_diff']['statistic']:8.1g} {r['max_rel_diff_p_value']:8.1g} "
            f"{r['p_values_bit_identical']:4d}/{r['feature_results_compared']:<4d}"
        )
    print()
    print("split: p-values (scipy kstwo.sf | engine ks_pvalue.kstwo_sf) | everything else")
    for r in results:
        p, w = r["p_value_part_s"], r["without_p_values"]
        print(
            f"{r['scenario']:24} {r['mode']:7} p-values scipy {p['scipy'] * 1e3:6.2f}ms engine "
            f"{p['engine'] * 1e3:6.2f}ms | rest scipy {w['scipy_s'] * 1e3:6.2f}ms engine "
            f"{w['engine_s'] * 1e3:5.2f}ms -> {w['speedup']:.1f}x"
        )
    print()
    print("engine p-value paths (elements evaluated; steady: memo misses only)")
    for r in results:
        print(f"{r['scenario']:24} {r['mode']:7} {r['p_value_paths']}")

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
            "cold_repeats": repeats,
            "steady_steps": steps,
            "ks_method": "asymp",
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
