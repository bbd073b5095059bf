"""DriftMonitor: window semantics, decisions, error rates, threading and metrics."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from scipy import stats

from modelobs.monitoring.drift import DriftMonitor, DriftReport, DriftSettings, FeatureSpec

from .waiting import poll_until

CATS = ("a", "b", "c")
N_NUM = 10
NUM_NAMES = [f"x{j}" for j in range(N_NUM)]
SPECS = [FeatureSpec(n, "numeric") for n in NUM_NAMES] + [
    FeatureSpec("color", "categorical", CATS),
    FeatureSpec("size", "categorical", ("s", "m", "l", "xl")),
]
COLOR_P = [0.5, 0.3, 0.2]
SIZE_P = [0.1, 0.4, 0.4, 0.1]


def draw(rng: np.random.Generator, n: int, shift: dict[str, float] | None = None) -> list[dict]:
    """Rows from the reference distribution, optionally with mean shifts (in sd units)."""
    num = rng.normal(size=(n, N_NUM))
    for name, delta in (shift or {}).items():
        num[:, NUM_NAMES.index(name)] += delta
    color = rng.choice(CATS, size=n, p=COLOR_P)
    size = rng.choice(("s", "m", "l", "xl"), size=n, p=SIZE_P)
    return [
        {**dict(zip(NUM_NAMES, r, strict=True)), "color": c, "size": s}
        for r, c, s in zip(num.tolist(), color.tolist(), size.tolist(), strict=True)
    ]


def reference(rng: np.random.Generator, n: int = 5000) -> dict[str, np.ndarray]:
    ref = {name: rng.normal(size=n) for name in NUM_NAMES}
    ref["color"] = rng.choice(CATS, size=n, p=COLOR_P)
    ref["size"] = rng.choice(("s", "m", "l", "xl"), size=n, p=SIZE_P)
    return ref


def by_name(report: DriftReport) -> dict:
    return {f.name: f for f in report.features}


def test_false_alarm_rate_under_no_drift() -> None:
    """Windows of 500 from the reference distribution, 200 trials.

    Under the global null BH keeps P(any rejection) <= alpha (exactly alpha for independent
    continuous tests); the effect-size gate can only lower it. With 200 trials the binomial
    standard error at 0.05 is 0.0154, so alpha + 3 SE = 0.096 is the bound. The per-test
    rejection rate (2400 tests, SE 0.0044) must also be near alpha -- a check that the
    p-values are calibrated, not merely conservative.
    """
    rng = np.random.default_rng(2024)
    settings = DriftSettings(window_size=500, min_window=200)
    monitor = DriftMonitor(SPECS, reference(rng), settings)
    any_bh, any_drift, raw_rejections, tests = 0, 0, 0, 0
    for _ in range(200):
        monitor.observe(draw(rng, 500))  # replaces the whole window
        rep = monitor.compute()
        assert rep.window.size == 500 and rep.verdict_ready
        adjusted = [f.p_value_adjusted for f in rep.features]
        any_bh += any(p < settings.alpha for p in adjusted)
        any_drift += bool(rep.drifted_features)
        raw_rejections += sum(f.p_value < settings.alpha for f in rep.features)
        tests += len(rep.features)
    assert any_drift <= any_bh
    assert any_bh / 200 <= 0.05 + 0.046
    assert any_drift / 200 <= 0.05 + 0.046
    assert 0.025 <= raw_rejections / tests <= 0.075


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_half_sd_shift_in_one_feature_is_detected(seed: int) -> None:
    rng = np.random.default_rng(seed)
    monitor = DriftMonitor(SPECS, reference(rng), DriftSettings(window_size=500))
    monitor.observe(draw(rng, 500, shift={"x3": 0.5}))
    rep = monitor.compute()
    assert rep.drifted_features == ["x3"]
    assert rep.drift_share == pytest.approx(1 / len(SPECS))
    x3 = by_name(rep)["x3"]
    assert x3.test == "ks" and x3.statistic >= 0.1 and x3.p_value_adjusted < 0.05


def test_window_slides_and_matches_scipy_after_many_updates() -> None:
    """Ring wrap-around + cached slot codes give exactly scipy's answer on the last N rows."""
    rng = np.random.default_rng(9)
    ref = reference(rng, 800)
    monitor = DriftMonitor(SPECS, ref, DriftSettings(window_size=300, min_window=50))
    seen: list[dict] = []
    for step in range(25):
        batch = draw(rng, int(rng.integers(1, 90)), shift={"x0": step / 25})
        for row in batch[::7]:
            row["x1"] = float(np.round(row["x1"], 1))  # ties against a rounded reference
        monitor.observe(batch)
        seen.extend(batch)
        if step % 3:
            continue
        rep = monitor.compute()
        last = seen[-300:]
        assert rep.window.size == len(last)
        for name in NUM_NAMES[:3]:
            want = stats.ks_2samp(ref[name], [r[name] for r in last], method="asymp")
            got = by_name(rep)[name]
            assert got.statistic == want.statistic
            # bit-identical except on the Smirnov binomial-sum path (test_drift_stats.py)
            assert got.p_value == pytest.approx(want.pvalue, rel=1e-12, abs=0)
        counts = [sum(r["color"] == c for r in last) for c in CATS]
        ref_counts = [int(np.sum(ref["color"] == c)) for c in CATS]
        want = stats.chi2_contingency([ref_counts, counts], correction=False)
        assert by_name(rep)["color"].statistic == want.statistic


def test_unseen_categories_go_to_other_bucket() -> None:
    rng = np.random.default_rng(5)
    monitor = DriftMonitor(SPECS, reference(rng), DriftSettings(window_size=400))
    rows = draw(rng, 400)
    for r in rows[:150]:
        r["color"] = "never-seen"
    rows[0]["color"] = None  # type: ignore[assignment]
    rows[1]["color"] = 7  # type: ignore[assignment]
    del rows[2]["size"]
    monitor.observe(rows)
    color = by_name(monitor.compute())["color"]
    assert color.drifted and color.psi > 1.0 and color.p_value < 1e-10
    json.dumps(monitor.report().to_dict(), allow_nan=False)


def test_unseen_category_in_reference_does_not_crash() -> None:
    rng = np.random.default_rng(6)
    ref = reference(rng)
    ref["color"][:10] = "legacy"  # a value the schema no longer lists
    monitor = DriftMonitor(SPECS, ref, DriftSettings(window_size=300))
    monitor.observe(draw(rng, 300))
    assert by_name(monitor.compute())["color"].p_value is not None


def test_no_verdict_before_min_window() -> None:
    rng = np.random.default_rng(8)
    monitor = DriftMonitor(SPECS, reference(rng), DriftSettings(window_size=500, min_window=200))
    assert monitor.report().computed_at is None and not monitor.report().verdict_ready
    monitor.observe(draw(rng, 199, shift={"x0": 3.0}))
    rep = monitor.compute()
    assert not rep.verdict_ready
    assert rep.drift_share == 0.0 and rep.drifted_features == []
    assert not any(f.drifted for f in rep.features)
    assert by_name(rep)["x0"].p_value < 1e-10  # statistics are still reported
    monitor.observe(draw(rng, 1, shift={"x0": 3.0}))
    rep = monitor.compute()
    assert rep.verdict_ready and rep.drifted_features == ["x0"]


def test_window_seconds_drops_old_rows() -> None:
    rng = np.random.default_rng(10)
    settings = DriftSettings(window_size=1000, window_seconds=60.0, min_window=100)
    monitor = DriftMonitor(SPECS, reference(rng), settings)
    now = time.time()
    monitor.observe(draw(rng, 400, shift={"x0": 3.0}), timestamp=now - 3600)
    monitor.observe(draw(rng, 300), timestamp=now - 5)
    rep = monitor.compute()
    assert rep.window.size == 300
    assert rep.window.start_time == pytest.approx(now - 5)
    assert "x0" not in rep.drifted_features


def test_on_change_fires_from_background_thread_on_flip() -> None:
    rng = np.random.default_rng(12)
    calls: list[tuple[list[str], bool, str]] = []
    got = threading.Event()

    def on_change(report: DriftReport, changed: list[str]) -> None:
        calls.append((changed, "x5" in report.drifted_features, threading.current_thread().name))
        got.set()

    settings = DriftSettings(window_size=400, min_window=200, recompute_every=100)
    monitor = DriftMonitor(SPECS, reference(rng), settings, on_change=on_change)
    monitor.start()
    try:
        monitor.observe(draw(rng, 400))
        poll_until(lambda: monitor.report().window.size >= 400, timeout_s=10, poll_s=0.01)
        assert monitor.report().window.size == 400 and not calls
        monitor.observe(draw(rng, 400, shift={"x5": 1.0}))
        assert got.wait(10)
    finally:
        monitor.stop()
    changed, drifted, thread = calls[0]
    assert changed == ["x5"] and drifted and thread == "drift-monitor"


def test_timer_recompute_without_new_rows() -> None:
    rng = np.random.default_rng(13)
    settings = DriftSettings(
        window_size=300, min_window=50, recompute_every=100, recompute_interval_s=0.05
    )
    monitor = DriftMonitor(SPECS, reference(rng), settings)
    monitor.observe(draw(rng, 60))  # below recompute_every: only the timer can trigger
    monitor.start()
    try:
        poll_until(lambda: monitor.report().computed_at is not None, timeout_s=5, poll_s=0.01)
    finally:
        monitor.stop()
    assert monitor.report().window.size == 60


def test_observe_is_thread_safe_under_concurrent_writers() -> None:
    """4 writers + a concurrent computer: every row lands exactly once and rows are not torn."""
    specs = [FeatureSpec("a", "numeric"), FeatureSpec("b", "numeric")]
    ref = {"a": np.arange(100.0), "b": np.arange(100.0)}
    writers, batches, per = 4, 300, 3
    monitor = DriftMonitor(specs, ref, DriftSettings(window_size=writers * batches * per))
    stop = threading.Event()

    def write(w: int) -> None:
        for i in range(batches):
            base = (w * batches + i) * per
            monitor.observe([{"a": float(base + k), "b": -float(base + k)} for k in range(per)])

    def compute_loop() -> None:
        while not stop.is_set():
            monitor.compute()

    computer = threading.Thread(target=compute_loop)
    computer.start()
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    computer.join()
    assert monitor._seq == writers * batches * per
    buf = monitor._num_buf
    assert sorted(buf[:, 0].tolist()) == list(range(writers * batches * per))
    assert np.array_equal(buf[:, 1], -buf[:, 0])
    assert monitor.compute().window.size == writers * batches * per


def test_metrics_exposed_with_contract_names_and_attributes() -> None:
    rng = np.random.default_rng(14)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    monitor = DriftMonitor(SPECS, reference(rng), DriftSettings(window_size=300))
    monitor.register_metrics(provider.get_meter("modelobs.drift.test"))
    monitor.observe(draw(rng, 300, shift={"x2": 1.0}))
    monitor.compute()
    points: dict[str, list] = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                points[metric.name] = list(metric.data.data_points)
    provider.shutdown()

    names = {s.name for s in SPECS}
    assert set(points) == {
        "modelobs.drift.ks.statistic",
        "modelobs.drift.p_value",
        "modelobs.drift.psi",
        "modelobs.drift.detected",
        "modelobs.drift.share",
        "modelobs.drift.window.size",
    }
    ks = {p.attributes["feature.name"]: p.value for p in points["modelobs.drift.ks.statistic"]}
    assert set(ks) == set(NUM_NAMES)
    tests = {
        p.attributes["feature.name"]: p.attributes["drift.test"]
        for p in points["modelobs.drift.p_value"]
    }
    assert tests == {**dict.fromkeys(NUM_NAMES, "ks"), "color": "chi2", "size": "chi2"}
    assert {p.attributes["feature.name"] for p in points["modelobs.drift.psi"]} == names
    detected = {p.attributes["feature.name"]: p.value for p in points["modelobs.drift.detected"]}
    assert detected == {n: int(n == "x2") for n in names}
    assert [p.value for p in points["modelobs.drift.share"]] == [pytest.approx(1 / 12)]
    assert [p.value for p in points["modelobs.drift.window.size"]] == [300]
    assert ks["x2"] == by_name(monitor.report())["x2"].statistic


def test_report_to_dict_shape() -> None:
    rng = np.random.default_rng(15)
    monitor = DriftMonitor(SPECS, reference(rng), DriftSettings(window_size=250))
    monitor.observe(draw(rng, 250))
    d = json.loads(json.dumps(monitor.compute().to_dict(), allow_nan=False))
    assert set(d) == {
        "computed_at",
        "window",
        "verdict_ready",
        "drift_share",
        "drifted_features",
        "features",
    }
    assert set(d["window"]) == {"size", "start_time", "end_time"}
    assert set(d["features"][0]) == {
        "name",
        "kind",
        "test",
        "statistic",
        "p_value",
        "p_value_adjusted",
        "psi",
        "drifted",
    }
    assert [f["name"] for f in d["features"]] == [s.name for s in SPECS]


def test_invalid_settings_and_missing_reference_rejected() -> None:
    with pytest.raises(ValueError):
        DriftSettings(window_size=100, min_window=200)
    with pytest.raises(ValueError):
        DriftMonitor(SPECS, {"x0": np.zeros(3)}, DriftSettings())
