"""Pure, vectorised drift statistics.

Everything here is a plain function of numpy arrays so it can be tested against scipy
directly. The numeric path is built around a *fixed* reference sample:

* the reference is sorted once (:class:`NumericReference`);
* every window value is mapped once to an integer **slot code** describing where it falls
  among the sorted reference values (``2*L`` = strictly between ``ref[L-1]`` and ``ref[L]``,
  ``2*L + 1`` = equal to ``ref[L]``, where ``L`` is the number of reference values below it);
* the two-sample KS statistic only depends on how many window values fall in each slot, so
  it is computed from the sorted integer codes in linear time, evaluating the ECDF
  difference at exactly the (reference count, window count) pairs that
  ``scipy.stats.ks_2samp`` evaluates, with the same float expression ``k/n1 - j/n2``.
  The statistic is bit-for-bit identical to scipy's ``method='asymp'`` statistic; the
  p-value (:func:`kstwo_sf`, scipy's ``kstwo.sf`` re-implemented vectorised) is
  bit-identical except on the Smirnov-tail path for n > 140 (relative error <= 1e-12).

Because codes are computed per value, a sliding window only needs codes for its *new* rows
(the monitor caches the rest); see ``DriftMonitor.compute``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy.special._ufuncs import _binom_pmf  # the ufunc behind scipy.stats.binom.pmf
from scipy.stats import kstwo

#: Lower bound applied to bin proportions before taking logs in PSI. 1e-4 is the common
#: industry choice: an empty bin then contributes a large but finite term
#: (e.g. reference 10% vs window 0% gives (0.1 - 1e-4) * ln(0.1 / 1e-4) ~ 0.69).
PSI_EPSILON = 1e-4


@dataclass(frozen=True)
class NumericReference:
    """A numeric reference sample prepared once: sorted values plus PSI bins.

    ``group_end[i]`` is the number of reference values ``<= sorted[i]`` (handles ties);
    ``edge_slots`` are the slot codes of the PSI bin edges (edges are reference values, so a
    window value's bin follows from its slot code alone); ``bin_props`` are the reference
    proportions per bin.
    """

    sorted: np.ndarray
    group_end: np.ndarray
    edges: np.ndarray
    edge_slots: np.ndarray
    bin_props: np.ndarray
    n: int  # reference size
    has_ties: bool  # some reference value occurs more than once
    nan_code: int  # code for missing / non-finite values; sorts after every real slot


def prepare_numeric_reference(values: np.ndarray, bins: int = 10) -> NumericReference:
    """Sort the reference once and derive quantile PSI bins from it.

    Non-finite reference values are dropped (they carry no distributional information).
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    x = np.sort(x[np.isfinite(x)])
    if x.size == 0:
        raise ValueError("numeric reference must contain at least one finite value")
    if bins < 2:
        raise ValueError("psi bins must be >= 2")
    n = x.size
    # number of reference values <= x[i]: right insertion point of each value in itself
    group_end = np.searchsorted(x, x, side="right").astype(np.int64)
    edges = quantile_edges(x, bins)
    # slot code of "equal to edge": 2 * (count of reference values strictly below it) + 1
    edge_slots = 2 * np.searchsorted(x, edges, side="left").astype(np.int64) + 1
    ref_counts = np.diff(np.concatenate(([0], np.searchsorted(x, edges, side="left"), [n])))
    return NumericReference(
        sorted=x,
        group_end=group_end,
        edges=edges,
        edge_slots=edge_slots,
        bin_props=ref_counts / n,
        n=n,
        has_ties=bool(np.any(x[1:] == x[:-1])),
        nan_code=2 * n + 1,
    )


def quantile_edges(sorted_ref: np.ndarray, bins: int) -> np.ndarray:
    """Interior PSI bin edges: reference quantiles at 1/bins .. (bins-1)/bins.

    ``method='inverted_cdf'`` makes every edge an actual reference value (needed so a bin
    is a function of the slot code). Duplicate edges -- heavy ties, discrete data -- are
    merged with ``np.unique``, so there may be fewer than ``bins`` bins. Bin ``k`` is
    ``[edge[k-1], edge[k])`` with open outer ends, so values beyond the reference range
    land in the outer bins.
    """
    qs = np.arange(1, bins) / bins
    return np.unique(np.quantile(sorted_ref, qs, method="inverted_cdf"))


def slot_codes(ref: NumericReference, x: np.ndarray) -> np.ndarray:
    """Map values to slot codes among the sorted reference (NaN/inf -> ``ref.nan_code``)."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] > 64:
        # bisection with sorted keys is several times faster (cache-friendly); a small
        # sort plus a scatter back is cheaper than that difference
        order = np.argsort(x)
        codes = np.empty(x.shape[0], dtype=np.int64)
        codes[order] = _codes_for(ref, x[order])
        return codes
    return _codes_for(ref, x)


def _codes_for(ref: NumericReference, x: np.ndarray) -> np.ndarray:
    left = np.searchsorted(ref.sorted, x, side="left")
    at = np.minimum(left, ref.n - 1)
    equal = (left < ref.n) & (ref.sorted[at] == x)
    codes = 2 * left.astype(np.int64) + equal
    codes[~np.isfinite(x)] = ref.nan_code
    return codes


def ks_statistic_from_codes(ref: NumericReference, codes: np.ndarray) -> tuple[float, int]:
    """Two-sided KS statistic between the reference and a window given as slot codes.

    Returns ``(D, n_window)`` where NaN codes are excluded from ``n_window``.
    ``D`` is NaN when the window is empty. See the module docstring for why the candidate
    pairs below are exactly the ones that decide scipy's max/min.
    """
    sc = np.sort(codes)
    n2 = int(np.searchsorted(sc, ref.nan_code, side="left"))
    return ks_statistic_from_sorted_codes(ref, sc[:n2]), n2


def ks_statistic_from_sorted_codes(ref: NumericReference, sc: np.ndarray) -> float:
    """KS statistic from already sorted, NaN-free slot codes (NaN for an empty window)."""
    n2 = int(sc.shape[0])
    if n2 == 0:
        return float("nan")
    n1 = ref.n
    change = np.flatnonzero(sc[1:] != sc[:-1]) + 1
    if change.shape[0] == n2 - 1:
        # fast path, no ties inside the window (continuous data): every code is its own
        # group, so starts = 0..n2-1 and ends = 1..n2 need no gathers
        starts = np.arange(n2 + 1)
        slots, w_start, w_end = sc, starts[:-1], starts[1:]
    else:
        # groups of identical codes = non-empty slots; [start, end) positions in sorted codes
        w_start = np.concatenate(([0], change))
        w_end = np.concatenate((change, [n2]))
        slots = sc[w_start]
    below = slots >> 1  # reference values strictly below the slot
    if ref.has_ties:
        is_equal = (slots & 1).astype(bool)
        ref_le = np.where(is_equal, ref.group_end[np.minimum(below, n1 - 1)], below)
    else:
        ref_le = below + (slots & 1)  # equal to ref[L] -> L + 1 reference values <= it
    # max of cdf_ref - cdf_win: last reference point before the slot (window count = start);
    # min: the slot's last window point (window count = end). Same float ops as scipy.
    upper = below / n1 - w_start / n2
    lower = ref_le / n1 - w_end / n2
    max_s = max(float(upper.max()), 0.0)
    min_s = float(np.clip(-min(float(lower.min()), 0.0), 0, 1))
    return min_s if min_s > max_s else max_s


# ----------------------------------------------------------------------------------------
# Vectorised two-sided KS p-value: scipy.stats.kstwo.sf re-implemented branch by branch.
#
# scipy (1.17, stats/_ksstats.py::_kolmogn, cdf=False) evaluates each element in Python and
# picks, by n and x (t = n*x, nx2 = t*x):
#   x <= 0.5/n -> 1, x >= 1 -> 0            (rv_continuous support handling)
#   t <= 1 or t >= n-1                      Ruben-Gambino closed forms
#   x >= 0.5                                2 * smirnov(n, x)
#   n <= 140: nx2 <= 0.754693 Durbin matrix, nx2 <= 4 Pomeranz, else 2 * smirnov(n, x)
#   n > 140:  nx2 >= 370 -> 0, nx2 >= 2.2 -> 2 * smirnov(n, x),
#             else 1 - cdf with cdf from Durbin (n*x**1.5 <= 1.4) or Pelz-Good.
# Here:
#   * support, nx2 >= 370 and Pelz-Good are evaluated for all features at once with the
#     same floating-point operations in the same order -> bit-identical results;
#   * 2 * smirnov(n, x) for n <= 140 calls the same C ufunc -> bit-identical;
#   * 2 * smirnov(n, x) for n > 140: scipy's ufunc sums up to n double-double
#     Birnbaum-Tingey terms and costs 0.1-2 ms per call. We sum the same terms as
#     binomial probabilities, A_j = C(n,j) p^j (1-p)^(n-j) / p with p = x + j/n, using the
#     C ufunc behind scipy.stats.binom.pmf (Boost): 10-15x faster, agrees with scipy to a
#     relative ~1e-14 (tests bound it at 1e-12). Not bit-identical.
#   * everything else (Ruben-Gambino, Durbin, Pomeranz: tiny statistics, p ~ 1, or t <= 1)
#     is passed to scipy.stats.kstwo.sf itself, one call for those elements only.
# ----------------------------------------------------------------------------------------

_PI_SQUARED = np.pi**2  # Python floats, as in scipy/stats/_ksstats.py
_PI_FOUR = np.pi**4
_PI_SIX = np.pi**6
_SQRT2PI = np.sqrt(2 * np.pi)  # np.float64, as in scipy
_SQRT3 = np.sqrt(3)
_PG_MIN_LOG = -708
#: Smirnov tails below this are taken from scipy's own ufunc: near the subnormal range
#: the binomial terms lose relative precision (such p-values occur only for extreme drift;
#: scipy returns 0 without any work once n*x^2 >= 370 and x < 0.5).
_SMIRNOV_SUM_MIN = 1e-250

#: counters of how elements were evaluated (for benchmarks); never used for results
KSTWO_PATH_COUNTS: dict[str, int] = {
    "closed": 0,
    "pelz_good": 0,
    "smirnov_ufunc": 0,
    "smirnov_binom_sum": 0,
    "scipy_fallback": 0,
}


def _pow(a: np.ndarray, e: float) -> np.ndarray:
    """``a ** e`` with libm ``pow`` per element, as numpy *scalar* ``**`` computes it.

    numpy's array power may use SIMD code (or x*x for e = 2) that can differ from libm in
    the last bit; scipy's Pelz-Good works on numpy scalars, so we mirror ``math.pow``.
    """
    return np.fromiter((math.pow(v, e) for v in a.tolist()), np.float64, a.shape[0])


def _pelz_good_cdf(n: np.ndarray, x: np.ndarray) -> np.ndarray:
    """scipy's ``_kolmogn_PelzGood(n, x, cdf=True)`` for arrays, same operations/order.

    Elements are grouped by ``maxk`` so the Horner loop and the two ``np.sum`` calls see
    exactly the lengths scipy's do (numpy's pairwise sum depends on the length).
    """
    out = np.empty(x.shape[0])
    z = np.sqrt(n) * x
    zsquared = _pow(z, 2)
    qlog = -_PI_SQUARED / 8 / zsquared
    tiny = qlog < _PG_MIN_LOG
    out[tiny] = 0.0
    keep = np.flatnonzero(~tiny)
    if keep.size == 0:
        return out
    z, zsquared, qlog, n = z[keep], zsquared[keep], qlog[keep], n[keep]
    zthree, zfour, zsix = _pow(z, 3), _pow(z, 4), _pow(z, 6)
    zseven, zeight, zten = _pow(z, 7), _pow(z, 8), _pow(z, 10)
    q = np.exp(qlog)
    k1a = -zsquared
    k1b = _PI_SQUARED / 4
    k2a = 6 * zsix + 2 * zfour
    k2b = (2 * zfour - 5 * zsquared) * _PI_SQUARED / 4
    k2c = _PI_FOUR * (1 - 2 * zsquared) / 16
    k3d = _PI_SIX * (5 - 30 * zsquared) / 64
    k3c = _PI_FOUR * (-60 * zsquared + 212 * zfour) / 16
    k3b = _PI_SQUARED * (135 * zfour - 96 * zsix) / 4
    k3a = -30 * zsix - 90 * zeight
    maxk_all = np.ceil(16 * z / np.pi).astype(np.int64)
    q2 = np.exp(-_PI_SQUARED / 2 / zsquared)
    sqrt3z = _SQRT3 * z
    res = np.empty(keep.size)
    for maxk in np.unique(maxk_all).tolist():
        g = np.flatnonzero(maxk_all == maxk)
        K = np.zeros((4, g.size))
        qg = q[g]
        for k in range(maxk, 0, -1):
            m = 2 * k - 1
            msquared, mfour, msix = m**2, m**4, m**6
            qpower = np.power(qg, 8 * k)
            K *= qpower
            K[0] += 1.0
            K[1] += k1a[g] + k1b * msquared
            K[2] += k2a[g] + k2b[g] * msquared + k2c[g] * mfour
            K[3] += k3a[g] + k3b[g] * msquared + k3c[g] * mfour + k3d[g] * msix
        K *= qg
        K *= _SQRT2PI
        zg = z[g]
        K /= np.stack([zg, 6 * zfour[g], 72 * zseven[g], 6480 * zten[g]])
        ks = np.arange(maxk, 0, -1)
        ksquared = ks**2
        kspi = np.pi * ks
        qpwers = np.power(q2[g][:, None], ksquared)  # rows: elements, cols: k
        k2extra = np.sum(ksquared * qpwers, axis=1)
        k2extra *= _PI_SQUARED * _SQRT2PI / (-36 * zthree[g])
        K[2] += k2extra
        s3 = sqrt3z[g][:, None]
        k3extra = np.sum((s3 + kspi) * (s3 - kspi) * ksquared * qpwers, axis=1)
        k3extra *= _PI_SQUARED * _SQRT2PI / (216 * zsix[g])
        K[3] += k3extra
        for u in np.unique(n[g]).tolist():
            sel = n[g] == u
            K[:, sel] /= np.power(u * 1.0, np.arange(4) / 2.0)[:, None]
        res[g] = 0 + K[0] + K[1] + K[2] + K[3]  # builtin sum() order
    out[keep] = res
    return out


def _smirnov_binom_sum(n: int, x: float) -> float:
    """``scipy.special.smirnov(n, x)`` for 1 < n*x < n - 1 via the Birnbaum-Tingey sum.

    smirnov = x * sum_j C(n,j) (x + j/n)^(j-1) (1 - x - j/n)^(n-j), j = 0..floor(n(1-x));
    each term is a binomial pmf at p = x + j/n divided by p.
    """
    j = np.arange(0, math.floor(n * (1.0 - x)) + 1, dtype=np.float64)
    p = x + j / n
    ok = p < 1.0
    j, p = j[ok], p[ok]
    return float(x * np.sum(_binom_pmf(j, float(n), p) / p))


#: Relative tolerance to scipy of p-values from the Smirnov binomial sum (the only
#: non-bit-identical path); observed maximum ~1e-13, see tests/test_drift_stats.py.
KS_PVALUE_RTOL = 1e-12


def _kstwo_branches(x: np.ndarray, n: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of scipy's kstwo.sf branches (see the comment block above)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        valid = np.isfinite(x) & (n >= 1) & (n == np.round(n))
        low = valid & (x <= 0.5 / n)
        high = valid & (x >= 1.0)
        t = n * x
        nx2 = t * x
        inner = valid & ~low & ~high & (t > 1) & (t < n - 1)
        big = n > 140
        smir = inner & ((x >= 0.5) | (big & (nx2 >= 2.2) & (nx2 < 370)) | (~big & (nx2 > 4)))
        zero = inner & ~smir & big & (nx2 >= 370)
        pg = inner & ~smir & big & (nx2 < 2.2) & ~((n <= 100000) & (n * x**1.5 <= 1.4))
    closed = low | high | zero
    return {
        "valid": valid,
        "low": low,
        "closed": closed,
        "smirnov": smir,
        "pelz_good": pg,
        "fallback": valid & ~(closed | smir | pg),
    }


def kstwo_sf(x: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``scipy.stats.kstwo.sf(x, n)`` for arrays of statistics ``x`` and integral ``n``.

    See the comment block above for which branches are bit-identical to scipy (all but
    the Smirnov binomial sum, within :data:`KS_PVALUE_RTOL`). NaN ``x`` or ``n < 1`` give
    NaN, as in scipy.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    n = np.ascontiguousarray(np.broadcast_to(n, x.shape), dtype=np.float64)
    out = np.full(x.shape, np.nan)
    b = _kstwo_branches(x, n)
    out[b["closed"]] = 0.0
    out[b["low"]] = 1.0
    KSTWO_PATH_COUNTS["closed"] += int(np.count_nonzero(b["closed"]))
    pg = b["pelz_good"]
    if pg.any():
        cdf = _pelz_good_cdf(n[pg], x[pg])
        out[pg] = np.clip(1.0 - cdf, 0.0, 1.0)
        KSTWO_PATH_COUNTS["pelz_good"] += int(np.count_nonzero(pg))
    for i in np.flatnonzero(b["smirnov"]).tolist():
        ni, xi = int(n[i]), float(x[i])
        sm = _smirnov_binom_sum(ni, xi) if ni > 140 else 0.0
        if sm >= _SMIRNOV_SUM_MIN:
            KSTWO_PATH_COUNTS["smirnov_binom_sum"] += 1
        else:
            sm = float(special.smirnov(ni, xi))
            KSTWO_PATH_COUNTS["smirnov_ufunc"] += 1
        out[i] = min(max(2 * sm, 0.0), 1.0)
    rest = b["fallback"]
    if rest.any():
        out[rest] = kstwo.sf(x[rest], n[rest])
        KSTWO_PATH_COUNTS["scipy_fallback"] += int(np.count_nonzero(rest))
    return out


def kstwo_sf_bit_exact(x: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Mask of elements for which :func:`kstwo_sf` is bit-identical to scipy by
    construction (everything except the Smirnov binomial-sum path)."""
    x = np.asarray(x, dtype=np.float64)
    n = np.broadcast_to(np.asarray(n, dtype=np.float64), x.shape)
    b = _kstwo_branches(x, n)
    return ~b["smirnov"] | (n <= 140) | (2 * n * x * x > 745)


def ks_pvalue_asymp(d: np.ndarray, n1: np.ndarray | int, n2: np.ndarray | int) -> np.ndarray:
    """Two-sided asymptotic KS p-value as ``ks_2samp(method='asymp')`` computes it:
    ``clip(kstwo.sf(d, round(m*n/(m+n))), 0, 1)``, with :func:`kstwo_sf` in place of
    scipy's per-element Python loop. NaN statistics give NaN p-values.
    """
    d = np.atleast_1d(np.asarray(d, dtype=np.float64))
    a = np.broadcast_to(np.asarray(n1, dtype=np.float64), d.shape)
    b = np.broadcast_to(np.asarray(n2, dtype=np.float64), d.shape)
    m = np.maximum(a, b)
    n = np.minimum(a, b)
    out = np.full(d.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        en = np.round(m * n / (m + n))
    # en < 1 only for n1 = n2 = 1, where scipy's answer is NaN too (kstwo needs n >= 1)
    ok = np.isfinite(d) & (en >= 1)
    if ok.any():
        out[ok] = np.clip(kstwo_sf(d[ok], en[ok]), 0, 1)
    return out


class KsPValueCache:
    """Bounded memo for :func:`ks_pvalue_asymp`, keyed by the exact ``(D, n1, n2)``.

    Why: the p-value is still a sizeable part of a recomputation (~20 us per feature on
    the Pelz-Good path, ~0.2 ms on the Smirnov binomial-sum path for n ~ 3,333, more on
    the rare scipy fallback) and it is a pure function of inputs that repeat a lot in a
    sliding window: ``D`` lives on
    the lattice ``k / lcm(n1, n2)`` and drifts slowly between recomputations, and all
    features with the same sizes share entries. A hit returns the very same float, so
    results equal a fresh computation. FIFO eviction keeps memory bounded.
    """

    def __init__(self, max_entries: int = 65_536) -> None:
        self.max_entries = max_entries
        self._memo: dict[tuple[float, float, float], float] = {}
        self.hits = 0
        self.misses = 0

    def __call__(self, d: np.ndarray, n1: np.ndarray, n2: np.ndarray) -> np.ndarray:
        keys = [(float(a), float(b), float(c)) for a, b, c in zip(d, n1, n2, strict=True)]
        out = np.empty(len(keys))
        missing = []
        for i, key in enumerate(keys):
            if key[0] != key[0]:  # NaN statistic (empty window): NaN p-value, never cached
                out[i] = np.nan
                continue
            got = self._memo.get(key)
            if got is None:
                missing.append(i)
            else:
                out[i] = got
        self.hits += sum(k[0] == k[0] for k in keys) - len(missing)
        self.misses += len(missing)
        if missing:
            idx = np.array(missing)
            fresh = ks_pvalue_asymp(d[idx], n1[idx], n2[idx])
            out[idx] = fresh
            for i, value in zip(missing, fresh.tolist(), strict=True):
                if len(self._memo) >= self.max_entries:
                    del self._memo[next(iter(self._memo))]
                self._memo[keys[i]] = value
        return out


def ks_2samp_asymp(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Convenience one-shot equivalent of ``scipy.stats.ks_2samp(x, y, method='asymp')``.

    ``x`` plays the reference role. Used by tests; the monitor reuses the prepared pieces.
    """
    ref = prepare_numeric_reference(x, bins=2)
    d, n2 = ks_statistic_from_codes(ref, slot_codes(ref, y))
    return d, float(ks_pvalue_asymp(np.array([d]), ref.n, n2)[0])


def numeric_bin_counts(ref: NumericReference, sorted_codes: np.ndarray) -> np.ndarray:
    """Window counts per PSI bin from *sorted*, NaN-free slot codes (a few bisections)."""
    below_edge = np.searchsorted(sorted_codes, ref.edge_slots, side="left")
    return np.diff(np.concatenate(([0], below_edge, [sorted_codes.shape[0]])))


def psi(expected_props: np.ndarray, actual_props: np.ndarray, eps: float = PSI_EPSILON) -> float:
    """Population Stability Index ``sum((a - e) * ln(a / e))``.

    Proportions are floored at ``eps`` (see :data:`PSI_EPSILON`) so empty bins stay finite;
    they are not renormalised, so a bin empty on both sides contributes exactly 0.
    """
    e = np.maximum(np.asarray(expected_props, dtype=np.float64), eps)
    a = np.maximum(np.asarray(actual_props, dtype=np.float64), eps)
    return float(np.sum((a - e) * np.log(a / e)))


def chi2_two_sample(ref_counts: np.ndarray, win_counts: np.ndarray) -> tuple[float, float, int]:
    """Pearson chi-square test of homogeneity on the 2 x K table [reference; window].

    Equals ``scipy.stats.chi2_contingency(table, correction=False)`` after dropping
    categories that are empty in both rows (scipy rejects zero expected counts; an empty
    category carries no evidence). Why the contingency test rather than a goodness-of-fit
    ``chisquare`` against reference proportions: the reference is itself a finite sample,
    and treating its proportions as exact inflates false alarms -- this is the categorical
    analogue of the two-sample KS test. No Yates correction, so the test behaves the same
    for K = 2 as for larger K. Returns ``(statistic, p_value, dof)``.
    """
    table = np.vstack((ref_counts, win_counts)).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    k = table.shape[1]
    if k < 2 or table[1].sum() == 0 or table[0].sum() == 0:
        return 0.0, 1.0, 0
    # same operation order as scipy.stats.contingency.expected_freq
    rows = table.sum(axis=1, keepdims=True)
    cols = table.sum(axis=0, keepdims=True)
    expected = rows * cols / table.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    dof = k - 1
    return stat, float(special.chdtrc(float(dof), stat)), dof


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (same as ``false_discovery_control(p, 'bh')``).

    NaN entries (features without a test result) are ignored and stay NaN.
    """
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = np.argsort(p[ok], kind="stable")
    scaled = p[ok][order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out[ok[order]] = np.clip(adjusted, 0, 1)
    return out


class NumericBatch:
    """All numeric references of a monitor, prepared for 2-D work over every feature at once.

    Why: with one numpy call per feature per step, a recomputation over 30 features was
    dominated by call overhead (~40 us per feature for sort + ECDF pass + PSI). Here the
    window is a ``(features, rows)`` code matrix: one ``np.sort(axis=1)``, one ECDF pass
    over the matrix, and PSI bin counts / window sizes from a single ``searchsorted`` on the
    sorted codes made disjoint per feature by adding ``row * stride``.

    The KS statistic evaluates ``L/n1 - i/n2`` (max) and ``ref_le/n1 - (i+1)/n2`` (min) at
    *every* sorted window position ``i``, not only at the first/last position of each run
    of equal codes as :func:`ks_statistic_from_sorted_codes` does: within a run ``L`` and
    ``ref_le`` are constant and ``i/n2`` is monotone, so the extra candidates can never
    exceed the run's own (the max is attained at the run's first position, the min at its
    last) -- the same floats come out, bit for bit. Rows with missing values are evaluated
    with the 1-D function on their NaN-free prefix.
    """

    def __init__(self, refs: list[NumericReference]) -> None:
        self.refs = refs
        f = len(refs)
        self.n1 = np.array([r.n for r in refs], dtype=np.int64)
        self.n1_col = self.n1[:, None]
        self.nan_codes = np.array([r.nan_code for r in refs], dtype=np.int64)
        big = int(self.nan_codes.max()) if f else 0
        self.code_dtype = np.int32 if big < 2**31 - 1 else np.int64
        self.stride = big + 1  # per-row offset that makes codes of different rows disjoint
        self.ref_start = np.concatenate(([0], np.cumsum(self.n1)[:-1])).astype(np.int64)
        self.ref_flat = np.concatenate([r.sorted for r in refs]) if f else np.empty(0)
        self.has_ties = np.array([r.has_ties for r in refs], dtype=bool)
        # per feature, sorted queries: [row start, PSI edge slots..., NaN code] + row offset
        queries, bin_pos, nan_pos = [], [], []
        at = 0
        for j, r in enumerate(refs):
            q = np.concatenate(([0], r.edge_slots, [r.nan_code])) + j * self.stride
            queries.append(q)
            bin_pos.append(np.arange(at, at + q.size - 1))  # diff index of each bin
            nan_pos.append(at + q.size - 1)
            at += q.size
        self.queries = np.concatenate(queries).astype(np.int64) if f else np.empty(0, np.int64)
        self.nan_pos = np.array(nan_pos, dtype=np.int64)
        # PSI: features grouped by bin count so each group is one (features, bins) matrix
        self.psi_groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        nbins = np.array([r.bin_props.size for r in refs], dtype=np.int64)
        for b in np.unique(nbins).tolist():
            rows = np.flatnonzero(nbins == b)
            idx = np.stack([bin_pos[j] for j in rows.tolist()])
            exp = np.maximum(np.stack([refs[j].bin_props for j in rows.tolist()]), PSI_EPSILON)
            self.psi_groups.append((rows, idx, exp))
        self.n1_float = self.n1_col.astype(np.float64)  # exact; int / n1 gives the same floats
        self.row_offset = (np.arange(f, dtype=np.int64) * self.stride)[:, None]
        self._frac_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._buffers: tuple[np.ndarray, ...] | None = None

    def _scratch(self, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Work arrays reused across calls (not thread-safe: the monitor calls under a lock).

        Fresh ~1 MB temporaries per call cost more in page faults than the arithmetic.
        """
        f = self.n1.size
        b = self._buffers
        if b is None or b[0].shape != (f, w):
            b = (
                np.empty((f, w), dtype=self.code_dtype),
                np.empty((f, w), dtype=np.int64),
                np.empty((2, f, w), dtype=self.code_dtype),
                np.empty((f, w), dtype=np.float64),
            )
            self._buffers = b
        return b  # type: ignore[return-value]

    def slot_codes(self, x: np.ndarray) -> np.ndarray:
        """Slot codes of a ``(features, rows)`` value matrix (as :func:`slot_codes`)."""
        x = np.asarray(x, dtype=np.float64)
        f, k = x.shape
        out = np.empty((f, k), dtype=self.code_dtype)
        if k == 0:
            return out
        if k > 256:
            # many rows (first computation): per-feature calls; the 2-D version's large
            # temporaries cost more in page faults than the call overhead it saves
            x = np.ascontiguousarray(x)
            for j, r in enumerate(self.refs):
                out[j] = slot_codes(r, x[j])
            return out
        # bisection with sorted keys is several times faster (cache-friendly)
        order = np.argsort(x, axis=1)
        xs = np.take_along_axis(x, order, axis=1)
        left = np.empty((f, k), dtype=np.int64)
        for j, r in enumerate(self.refs):
            left[j] = np.searchsorted(r.sorted, xs[j], side="left")
        at = np.minimum(left, self.n1_col - 1) + self.ref_start[:, None]
        equal = (left < self.n1_col) & (self.ref_flat[at] == xs)
        codes = 2 * left + equal
        codes = np.where(np.isfinite(xs), codes, self.nan_codes[:, None])
        np.put_along_axis(out, order, codes, axis=1)
        return out

    def _fractions(self, w: int) -> tuple[np.ndarray, np.ndarray]:
        """``i / w`` and ``(i + 1) / w`` for i = 0..w-1 (the window ECDF before/at i)."""
        got = self._frac_cache.get(w)
        if got is None:
            i = np.arange(w + 1)
            got = (i[:-1] / w, i[1:] / w)
            self._frac_cache = {w: got}
        return got

    def evaluate(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """KS statistic, NaN-free window size and PSI per feature from a code matrix.

        ``codes`` is ``(features, rows)``. Returns ``(D, n_window, psi)``; ``D`` and ``psi``
        are NaN where a feature has no usable value.
        """
        f, w = codes.shape
        stat = np.full(f, np.nan)
        psi_out = np.full(f, np.nan)
        if w == 0 or f == 0:
            return stat, np.zeros(f, dtype=np.int64), psi_out
        sc, flat, small, real = self._scratch(w)
        sc[...] = codes
        sc.sort(axis=1)
        np.add(sc, self.row_offset, out=flat)
        pos = np.searchsorted(flat.ravel(), self.queries, side="left")
        n2 = pos[self.nan_pos] - np.arange(f, dtype=np.int64) * w
        counts = np.diff(pos)

        fast = (n2 == w) & ~self.has_ties
        rows = np.flatnonzero(fast)
        if rows.size:
            before, at = self._fractions(w)
            if rows.size == f:
                m, below, n1, out = sc, small[0], self.n1_float, real
            else:
                m, below, n1 = sc[rows], small[0][: rows.size], self.n1_float[rows]
                out = real[: rows.size]
            np.right_shift(m, 1, out=below)  # reference values below the slot
            np.divide(below, n1, out=out)
            out -= before
            max_s = np.maximum(out.max(axis=1), 0.0)
            ref_le = np.bitwise_and(m, 1, out=small[1][: below.shape[0]])
            ref_le += below  # "equal to ref[L]" -> L + 1 reference values <= it
            np.divide(ref_le, n1, out=out)
            out -= at
            min_s = np.clip(-np.minimum(out.min(axis=1), 0.0), 0, 1)
            stat[rows] = np.where(min_s > max_s, min_s, max_s)
        for j in np.flatnonzero(~fast & (n2 > 0)).tolist():
            stat[j] = ks_statistic_from_sorted_codes(self.refs[j], sc[j, : n2[j]])

        for rows_g, idx, exp in self.psi_groups:
            valid = n2[rows_g]
            ok = valid > 0
            if not ok.any():
                continue
            act = np.maximum(counts[idx[ok]] / valid[ok][:, None], PSI_EPSILON)
            e = exp[ok]
            psi_out[rows_g[ok]] = np.sum((act - e) * np.log(act / e), axis=1)
        return stat, n2, psi_out
