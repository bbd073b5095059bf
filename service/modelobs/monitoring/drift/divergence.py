"""Effect size and the categorical test: PSI and the chi-square test of homogeneity."""

from __future__ import annotations

import numpy as np
from scipy import special

#: Lower bound applied to bin proportions before taking logs in PSI. 1e-4 is the common
#: industry choice: an empty bin then contributes a large but finite term
#: (e.g. reference 10% vs window 0% gives (0.1 - 1e-4) * ln(0.1 / 1e-4) ~ 0.69).
PSI_EPSILON = 1e-4


def psi(expected_props: np.ndarray, actual_props: np.ndarray, eps: float = PSI_EPSILON) -> float:
    """Population Stability Index ``sum((a - e) * ln(a / e))``.

    Proportions are floored at ``eps`` (see :data:`PSI_EPSILON`) so empty bins stay finite;
    they are not renormalised, so a bin empty on both sides contributes exactly 0.
    """
    return float(psi_rows(expected_props, actual_props, eps))


def psi_rows(
    expected_props: np.ndarray, actual_props: np.ndarray, eps: float = PSI_EPSILON
) -> np.ndarray:
    """:func:`psi` along the last axis: one PSI per row of a ``(features, bins)`` matrix."""
    e = np.maximum(np.asarray(expected_props, dtype=np.float64), eps)
    a = np.maximum(np.asarray(actual_props, dtype=np.float64), eps)
    return np.sum((a - e) * np.log(a / e), axis=-1)


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
