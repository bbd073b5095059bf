"""Numeric features against a fixed reference: slot codes, the two-sample KS statistic and
PSI bin counts, for one feature or for all of them at once (:class:`NumericBatch`).

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
  The statistic is bit-for-bit identical to scipy's ``method='asymp'`` statistic (its
  p-value is in :mod:`.ks_pvalue`);
* PSI bin edges are reference values, so a window value's bin follows from its code too.

Because codes are computed per value, a sliding window only needs codes for its *new* rows
(the monitor caches the rest); see ``DriftMonitor.compute``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .divergence import psi_rows


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


def numeric_bin_counts(ref: NumericReference, sorted_codes: np.ndarray) -> np.ndarray:
    """Window counts per PSI bin from *sorted*, NaN-free slot codes (a few bisections)."""
    below_edge = np.searchsorted(sorted_codes, ref.edge_slots, side="left")
    return np.diff(np.concatenate(([0], below_edge, [sorted_codes.shape[0]])))


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
            exp = np.stack([refs[j].bin_props for j in rows.tolist()])
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
            psi_out[rows_g[ok]] = psi_rows(exp[ok], counts[idx[ok]] / valid[ok][:, None])
        return stat, n2, psi_out
