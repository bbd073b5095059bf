"""The drift statistics equal scipy's (exactly where the brief says "equal")."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from modelobs.monitoring.drift import divergence, ks_pvalue, multiple_testing, numeric


def ks_2samp_asymp(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The engine's pieces composed as one ``ks_2samp(x, y, method='asymp')``; ``x`` plays
    the reference (the monitor composes the same pieces through NumericBatch)."""
    ref = numeric.prepare_numeric_reference(x, bins=2)
    d, n2 = numeric.ks_statistic_from_codes(ref, numeric.slot_codes(ref, y))
    return d, float(ks_pvalue.ks_pvalue_asymp(np.array([d]), ref.n, n2)[0])


def _random_case(rng: np.random.Generator, i: int) -> tuple[np.ndarray, np.ndarray]:
    kind = i % 5
    n1 = int(rng.integers(5, 3000))
    n2 = int(rng.integers(5, 21)) if i % 2 else int(rng.integers(21, 2000))
    if kind == 0:  # integer-valued: many ties within and across samples
        return rng.integers(0, 8, n1).astype(float), rng.integers(0, 9, n2).astype(float)
    if kind == 1:  # continuous, shifted
        return rng.normal(size=n1), rng.normal(0.3, 1.2, size=n2)
    if kind == 2:  # rounded: ties, window partly copied from the reference
        x = np.round(rng.normal(size=n1), 1)
        y = np.concatenate([x[: n2 // 2], np.round(rng.normal(size=n2 - n2 // 2), 1)])
        return x, y
    if kind == 3:  # window entirely outside the reference range
        return rng.uniform(0, 1, n1), rng.uniform(2, 3, n2)
    # heavy ties on a single value plus tails
    x = np.where(rng.random(n1) < 0.6, 0.0, rng.exponential(size=n1))
    y = np.where(rng.random(n2) < 0.3, 0.0, rng.exponential(size=n2))
    return x, y


def assert_pvalue_matches(got: float, want: float, d: float, n1: int, n2: int) -> None:
    """Our p-value vs scipy's: bit-identical on every path that mirrors scipy's operations
    (closed forms, Pelz-Good, the smirnov ufunc for n <= 140, scipy fallback); within
    ``KS_PVALUE_RTOL`` relative on the Smirnov binomial-sum path (n > 140, p < ~0.03)."""
    en = float(np.round(max(n1, n2) * min(n1, n2) / (n1 + n2)))
    if ks_pvalue.kstwo_sf_bit_exact(np.array([d]), en)[0]:
        assert got == want, (d, n1, n2, got, want)
    else:
        assert abs(got - want) <= ks_pvalue.KS_PVALUE_RTOL * abs(want), (d, n1, n2, got, want)


def assert_ks_matches_scipy(x: np.ndarray, y: np.ndarray) -> float:
    """Statistic bit for bit, p-value as :func:`assert_pvalue_matches`; returns D."""
    expected = stats.ks_2samp(x, y, method="asymp")
    d, p = ks_2samp_asymp(x, y)
    assert d == expected.statistic, (x.size, y.size)
    assert_pvalue_matches(p, expected.pvalue, d, x.size, y.size)
    return d


def test_ks_equals_scipy_asymp_on_randomised_cases() -> None:
    rng = np.random.default_rng(7)
    for i in range(300):
        assert_ks_matches_scipy(*_random_case(rng, i))


def _service_sized_case(rng: np.random.Generator, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Window 200-10,000 vs reference 5,000-10,000; effect sizes from none to huge, so
    the statistic lands in every large-n branch (Pelz-Good, Smirnov, 0)."""
    n1 = int(rng.integers(5000, 10_001))
    n2 = (
        int(rng.choice([200, 500, 1000, 5000, 10_000])) if i % 2 else int(rng.integers(200, 10_001))
    )
    shift = [0.0, 0.0, 0.05, 0.1, 0.2, 0.5, 1.0, 3.0][i % 8]
    return rng.normal(size=n1), rng.normal(shift, 1.0, size=n2)


def test_ks_pvalues_match_scipy_at_service_sizes() -> None:
    rng = np.random.default_rng(21)
    seen: set[str] = set()
    for i in range(120):
        x, y = _service_sized_case(rng, i)
        d = assert_ks_matches_scipy(x, y)
        en = np.round(max(x.size, y.size) * min(x.size, y.size) / (x.size + y.size))
        seen |= {
            k for k, v in ks_pvalue._kstwo_branches(np.array([d]), np.array([en])).items() if v[0]
        }
    assert {"pelz_good", "smirnov", "closed"} <= seen


def test_kstwo_sf_matches_scipy_in_every_branch() -> None:
    """600 direct (x, n) cases: n = 1..12,000 (tiny windows through large ones), x from
    1e-5 to 1, covering support ends, Ruben-Gambino, Durbin, Pomeranz, Pelz-Good,
    Smirnov (ufunc and binomial sum) and the n*x^2 >= 370 zero."""
    rng = np.random.default_rng(5)
    ns, xs = [], []
    for i in range(600):
        if i % 4 == 0:
            n = int(rng.integers(1, 141))  # scipy's small-n branches
        else:
            n = int(rng.choice([141, 192, 476, 909, 1667, 3333, 4762, 5000, 12_000]))
        if i % 3 == 0:  # around the branch cut-offs in n*x^2 (0.75, 2.2, 4, 370)
            c = float(rng.choice([0.5, 0.754693, 1.0, 2.2, 3.0, 4.0, 20.0, 200.0, 369.0, 371.0]))
            x = min(math.sqrt(c * rng.uniform(0.97, 1.03) / n), 0.999)
        else:
            x = float(10 ** rng.uniform(-5, 0))
        ns.append(float(n))
        xs.append(x)
    x, n = np.array(xs), np.array(ns)
    paths: Counter[str] = Counter()
    got = ks_pvalue.kstwo_sf(x, n, paths)
    want = np.array([stats.kstwo.sf(a, b) for a, b in zip(x, n, strict=True)])
    exact = ks_pvalue.kstwo_sf_bit_exact(x, n)
    np.testing.assert_array_equal(got[exact], want[exact])
    err = np.abs(got[~exact] - want[~exact])
    assert err.size > 50 and np.all(err <= ks_pvalue.KS_PVALUE_RTOL * want[~exact])
    branches = ks_pvalue._kstwo_branches(x, n)
    for name in ("closed", "smirnov", "pelz_good", "fallback"):
        assert branches[name].sum() >= 20, name
    # the optional counter sees every element once, on the path its branch mask names
    assert set(paths) <= set(ks_pvalue.PATHS) and paths.total() == x.size
    assert paths["pelz_good"] == branches["pelz_good"].sum()
    assert paths["scipy_fallback"] == branches["fallback"].sum()
    assert paths["smirnov_binom_sum"] + paths["smirnov_ufunc"] == branches["smirnov"].sum()
    assert paths["smirnov_binom_sum"] > 0 and paths["smirnov_ufunc"] > 0
    np.testing.assert_array_equal(ks_pvalue.kstwo_sf(x, n), got)  # results never depend on it


@pytest.mark.parametrize("n2", [5, 6, 7, 11, 13, 20])
def test_ks_tiny_windows_equal_scipy(n2: int) -> None:
    rng = np.random.default_rng(n2)
    for _ in range(10):
        x = rng.integers(0, 4, 40).astype(float)
        y = rng.integers(0, 4, n2).astype(float)
        r = stats.ks_2samp(x, y, method="asymp")
        assert ks_2samp_asymp(x, y) == (r.statistic, r.pvalue)


def test_ks_identical_samples_and_single_values() -> None:
    x = np.array([1.0, 1.0, 2.0, 3.0])
    assert ks_2samp_asymp(x, x) == (0.0, 1.0)
    r = stats.ks_2samp([5.0], [1.0, 2.0], method="asymp")
    assert ks_2samp_asymp(np.array([5.0]), np.array([1.0, 2.0])) == (r.statistic, r.pvalue)


def test_nan_window_values_are_excluded() -> None:
    ref = numeric.prepare_numeric_reference(np.arange(100.0), bins=4)
    y = np.array([1.5, np.nan, 50.0, np.inf, 99.0])
    d, n2 = numeric.ks_statistic_from_codes(ref, numeric.slot_codes(ref, y))
    assert n2 == 3
    assert d == stats.ks_2samp(np.arange(100.0), [1.5, 50.0, 99.0], method="asymp").statistic


def test_vectorised_pvalues_equal_scalar_scipy() -> None:
    d = np.array([0.0, 0.003, 0.01, 0.02, 0.05, 0.2, 0.9, 1.0])
    got = ks_pvalue.ks_pvalue_asymp(d, 10_000, 5000)
    en = np.round(10_000 * 5000 / 15_000)
    want = [np.clip(stats.kstwo.sf(v, en), 0, 1) for v in d]
    for g, w, v in zip(got.tolist(), want, d, strict=True):
        assert_pvalue_matches(g, w, v, 10_000, 5000)


def test_psi_hand_computed() -> None:
    # reference proportions 0.5/0.3/0.2, window 0.4/0.4/0.2:
    # (0.4-0.5)ln(0.4/0.5) + (0.4-0.3)ln(0.4/0.3) + 0 = 0.0223144 + 0.0287682 = 0.0510826
    expected = (-0.1) * math.log(0.8) + 0.1 * math.log(4 / 3)
    assert divergence.psi(np.array([0.5, 0.3, 0.2]), np.array([0.4, 0.4, 0.2])) == pytest.approx(
        0.0510826, abs=1e-7
    )
    assert divergence.psi(np.array([0.5, 0.3, 0.2]), np.array([0.4, 0.4, 0.2])) == pytest.approx(
        expected
    )
    # empty window bin: floored at epsilon 1e-4 -> (1e-4 - 0.5) ln(1e-4 / 0.5) + ...
    got = divergence.psi(np.array([0.5, 0.5]), np.array([0.0, 1.0]))
    want = (1e-4 - 0.5) * math.log(1e-4 / 0.5) + 0.5 * math.log(2.0)
    assert got == pytest.approx(want)
    assert divergence.psi(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == 0.0


def test_numeric_psi_bins_from_reference_quantiles() -> None:
    ref = numeric.prepare_numeric_reference(np.arange(1.0, 101.0), bins=4)
    # inverted-cdf quartiles of 1..100 are 25, 50, 75 (actual reference values)
    assert ref.edges.tolist() == [25.0, 50.0, 75.0]
    assert ref.bin_props.tolist() == [0.24, 0.25, 0.25, 0.26]  # [..25) [25,50) [50,75) [75..
    y = np.array([-5.0, 24.9, 25.0, 49.0, 60.0, 75.0, 1000.0, 80.0])
    counts = numeric.numeric_bin_counts(ref, np.sort(numeric.slot_codes(ref, y)))
    assert counts.tolist() == [2, 2, 1, 3]
    assert counts.tolist() == np.bincount(np.searchsorted(ref.edges, y, "right")).tolist()


def test_psi_duplicate_edges_are_merged() -> None:
    x = np.array([0.0] * 80 + list(range(1, 21)), dtype=float)  # 80% zeros
    ref = numeric.prepare_numeric_reference(x, bins=10)
    assert np.all(np.diff(ref.edges) > 0)
    assert ref.bin_props.sum() == pytest.approx(1.0)
    # window identical to the reference -> PSI exactly 0
    counts = numeric.numeric_bin_counts(ref, np.sort(numeric.slot_codes(ref, x)))
    assert divergence.psi(ref.bin_props, counts / x.size) == 0.0


def test_chi2_equals_scipy_contingency() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        k = int(rng.integers(2, 7))
        ref = rng.integers(0, 500, k)
        win = rng.integers(0, 60, k)
        ref[0] += 1  # keep at least one category non-empty
        win[0] += 1
        stat, p, dof = divergence.chi2_two_sample(ref, win)
        r = stats.chi2_contingency(np.vstack([ref, win]), correction=False)
        assert stat == r.statistic
        assert p == r.pvalue
        assert dof == r.dof


def test_chi2_drops_categories_empty_on_both_sides() -> None:
    ref = np.array([100, 50, 0, 0])  # last column = unseen bucket, empty in the reference
    win = np.array([10, 10, 0, 5])
    stat, p, dof = divergence.chi2_two_sample(ref, win)
    r = stats.chi2_contingency(np.array([[100, 50, 0], [10, 10, 5]]), correction=False)
    assert (stat, p, dof) == (r.statistic, r.pvalue, r.dof)
    assert divergence.chi2_two_sample(np.array([5, 0]), np.array([7, 0])) == (0.0, 1.0, 0)


def test_benjamini_hochberg_equals_scipy() -> None:
    rng = np.random.default_rng(11)
    for _ in range(20):
        p = rng.random(30) ** 3
        np.testing.assert_allclose(
            multiple_testing.benjamini_hochberg(p),
            stats.false_discovery_control(p, method="bh"),
            rtol=1e-15,
        )
    out = multiple_testing.benjamini_hochberg(np.array([0.01, np.nan, 0.04]))
    assert math.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], stats.false_discovery_control([0.01, 0.04]))


def test_pvalue_cache_returns_identical_values_and_is_bounded() -> None:
    cache = ks_pvalue.KsPValueCache(max_entries=8)
    rng = np.random.default_rng(4)
    for _ in range(5):
        d = np.round(rng.uniform(0, 0.05, 6), 3)
        d[0] = np.nan
        n1 = np.full(6, 10_000.0)
        n2 = rng.choice([500.0, 1000.0], 6)
        got = cache(d, n1, n2)
        want = ks_pvalue.ks_pvalue_asymp(d, n1, n2)
        np.testing.assert_array_equal(got, want)
        assert len(cache._memo) <= 8
    again = cache(d, n1, n2)
    np.testing.assert_array_equal(again, want)
    assert cache.hits >= 5


@pytest.mark.parametrize("seed", range(6))
def test_numeric_batch_equals_per_feature_and_scipy(seed: int) -> None:
    """The 2-D path (all features at once) gives the 1-D results and scipy's statistic bit
    for bit: ties in the reference and in the window, NaN/inf rows, all-NaN features,
    references of different sizes, windows out of range."""
    rng = np.random.default_rng(100 + seed)
    w = int(rng.integers(1, 400)) if seed % 2 else int(rng.integers(400, 3000))
    refs_x, wins = [], []
    for i in range(12):
        x, y = _random_case(rng, i + seed)
        y = rng.choice(y, size=w) if y.size else np.full(w, np.nan)
        if i % 4 == 1:  # some missing / non-finite window values
            y[rng.random(w) < 0.2] = np.nan
            y[rng.random(w) < 0.05] = np.inf
        if i == 7:
            y[:] = np.nan
        refs_x.append(x)
        wins.append(y)
    refs = [numeric.prepare_numeric_reference(x, bins=int(rng.integers(2, 12))) for x in refs_x]
    batch = numeric.NumericBatch(refs)
    codes = batch.slot_codes(np.stack(wins))
    for _ in range(2):  # second call reuses the scratch buffers
        d, n2, psi = batch.evaluate(codes)
    for j, (ref, x, y) in enumerate(zip(refs, refs_x, wins, strict=True)):
        c1 = numeric.slot_codes(ref, y)
        assert np.array_equal(codes[j], c1)
        want_d, want_n = numeric.ks_statistic_from_codes(ref, c1)
        assert n2[j] == want_n
        if want_n == 0:
            assert math.isnan(d[j]) and math.isnan(psi[j])
            continue
        assert d[j] == want_d
        yy = y[np.isfinite(y)]
        assert d[j] == stats.ks_2samp(x, yy, method="asymp").statistic
        sc = np.sort(c1)[:want_n]
        assert psi[j] == divergence.psi(ref.bin_props, numeric.numeric_bin_counts(ref, sc) / want_n)
