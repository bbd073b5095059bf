"""Drift engine: sliding-window feature drift vs a fixed reference, off the request path.

:mod:`.monitor` keeps the window, runs the thread and publishes the gauges; the statistics,
each checked against scipy in tests/test_drift_stats.py, are :mod:`.numeric` (slot codes,
KS statistic, PSI bins), :mod:`.ks_pvalue` (the KS p-value), :mod:`.divergence` (PSI,
chi-square) and :mod:`.multiple_testing` (Benjamini-Hochberg); :mod:`.events` logs a
verdict that flips.
"""

from .monitor import (
    UNSEEN,
    DriftMonitor,
    DriftReport,
    DriftSettings,
    FeatureDrift,
    FeatureSpec,
    WindowInfo,
)

__all__ = [
    "UNSEEN",
    "DriftMonitor",
    "DriftReport",
    "DriftSettings",
    "FeatureDrift",
    "FeatureSpec",
    "WindowInfo",
]
