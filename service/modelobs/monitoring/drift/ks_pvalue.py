"""The two-sided KS p-value: ``scipy.stats.kstwo.sf`` re-implemented vectorised.

scipy evaluates ``kstwo.sf`` element by element in Python; a drift recomputation needs one
p-value per numeric feature, so the per-element loop was a large part of its cost. Here
scipy's branches are evaluated for all features at once: bit-identical to scipy on every
branch except the Smirnov binomial sum for n > 140 (relative error <= :data:`KS_PVALUE_RTOL`).
See bench/README.md for the measurement and the per-branch table.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
from scipy import special
from scipy.stats import binom, kstwo

# ----------------------------------------------------------------------------------------
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
#     binomial probabilities, A_j = C(n,j) p^j (1-p)^(n-j) / p with p = x + j/n, using
#     scipy.stats.binom.pmf: several times faster, agrees with scipy to a relative ~1e-13
#     (tests bound it at 1e-12). Not bit-identical.
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

#: How :func:`kstwo_sf` can evaluate an element: the keys it counts in a ``paths`` counter.
PATHS = ("closed", "pelz_good", "smirnov_ufunc", "smirnov_binom_sum", "scipy_fallback")


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
    each term is a binomial pmf at p = x + j/n divided by p. Calling the private ufunc
    behind ``binom.pmf`` directly gives the same floats and skips its argument checks, but
    saves too little to depend on a private name (measured per call: 250 vs 310 us at
    n = 3,333, 12 vs 49 us at n = 141; scipy's own smirnov ufunc takes 2,600 and 77 us).
    """
    j = np.arange(0, math.floor(n * (1.0 - x)) + 1, dtype=np.float64)
    p = x + j / n
    ok = p < 1.0
    j, p = j[ok], p[ok]
    return float(x * np.sum(binom.pmf(j, n, p) / p))


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


def kstwo_sf(x: np.ndarray, n: np.ndarray, paths: Counter[str] | None = None) -> np.ndarray:
    """``scipy.stats.kstwo.sf(x, n)`` for arrays of statistics ``x`` and integral ``n``.

    See the comment block above for which branches are bit-identical to scipy (all but
    the Smirnov binomial sum, within :data:`KS_PVALUE_RTOL`). NaN ``x`` or ``n < 1`` give
    NaN, as in scipy. ``paths``, when given (benchmarks), counts how each element was
    evaluated (keys in :data:`PATHS`); the results never depend on it.
    """
    counts: Counter[str] = Counter()
    x = np.ascontiguousarray(x, dtype=np.float64)
    n = np.ascontiguousarray(np.broadcast_to(n, x.shape), dtype=np.float64)
    out = np.full(x.shape, np.nan)
    b = _kstwo_branches(x, n)
    out[b["closed"]] = 0.0
    out[b["low"]] = 1.0
    counts["closed"] += int(np.count_nonzero(b["closed"]))
    pg = b["pelz_good"]
    if pg.any():
        cdf = _pelz_good_cdf(n[pg], x[pg])
        out[pg] = np.clip(1.0 - cdf, 0.0, 1.0)
        counts["pelz_good"] += int(np.count_nonzero(pg))
    for i in np.flatnonzero(b["smirnov"]).tolist():
        ni, xi = int(n[i]), float(x[i])
        sm = _smirnov_binom_sum(ni, xi) if ni > 140 else 0.0
        if sm >= _SMIRNOV_SUM_MIN:
            counts["smirnov_binom_sum"] += 1
        else:
            sm = float(special.smirnov(ni, xi))
            counts["smirnov_ufunc"] += 1
        out[i] = min(max(2 * sm, 0.0), 1.0)
    rest = b["fallback"]
    if rest.any():
        out[rest] = kstwo.sf(x[rest], n[rest])
        counts["scipy_fallback"] += int(np.count_nonzero(rest))
    if paths is not None:
        paths.update(counts)
    return out


def kstwo_sf_bit_exact(x: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Mask of elements for which :func:`kstwo_sf` is bit-identical to scipy by
    construction (everything except the Smirnov binomial-sum path)."""
    x = np.asarray(x, dtype=np.float64)
    n = np.broadcast_to(np.asarray(n, dtype=np.float64), x.shape)
    b = _kstwo_branches(x, n)
    return ~b["smirnov"] | (n <= 140) | (2 * n * x * x > 745)


def ks_pvalue_asymp(
    d: np.ndarray,
    n1: np.ndarray | int,
    n2: np.ndarray | int,
    paths: Counter[str] | None = None,
) -> np.ndarray:
    """Two-sided asymptotic KS p-value as ``ks_2samp(method='asymp')`` computes it:
    ``clip(kstwo.sf(d, round(m*n/(m+n))), 0, 1)``, with :func:`kstwo_sf` in place of
    scipy's per-element Python loop. NaN statistics give NaN p-values; ``paths`` as in
    :func:`kstwo_sf`.
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
        out[ok] = np.clip(kstwo_sf(d[ok], en[ok], paths), 0, 1)
    return out


class KsPValueCache:
    """Bounded memo for :func:`ks_pvalue_asymp`, keyed by the exact ``(D, n1, n2)``.

    Why: the p-value is still a sizeable part of a recomputation (~20 us per feature on
    the Pelz-Good path, ~0.2 ms on the Smirnov binomial-sum path for n ~ 3,333, more on
    the rare scipy fallback) and it is a pure function of inputs that repeat a lot in a
    sliding window: ``D`` lives on the lattice ``k / lcm(n1, n2)`` and drifts slowly
    between recomputations, and all features with the same sizes share entries. A hit
    returns the very same float, so results equal a fresh computation. FIFO eviction keeps
    memory bounded. ``paths`` (benchmarks) counts how the misses were evaluated.
    """

    def __init__(self, max_entries: int = 65_536, paths: Counter[str] | None = None) -> None:
        self.max_entries = max_entries
        self.paths = paths
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
            fresh = ks_pvalue_asymp(d[idx], n1[idx], n2[idx], self.paths)
            out[idx] = fresh
            for i, value in zip(missing, fresh.tolist(), strict=True):
                if len(self._memo) >= self.max_entries:
                    del self._memo[next(iter(self._memo))]
                self._memo[keys[i]] = value
        return out
