"""The structured log event for a drift verdict that flips: which features changed, which
are drifted now, and the most shifted ones, so one log line says what moved."""

from __future__ import annotations

from loguru import logger

from .monitor import DriftReport


def log_drift_change(report: DriftReport, changed: list[str]) -> None:
    """A structured event whenever a feature's drift verdict flips (from the drift thread)."""
    by_name = {f.name: f for f in report.features}
    most_shifted = sorted(
        (f for f in report.features if f.psi is not None), key=lambda f: f.psi or 0, reverse=True
    )[:3]
    logger.bind(
        event="drift_changed",
        changed=[{"feature": n, "drifted": by_name[n].drifted} for n in changed],
        drifted_features=report.drifted_features,
        drift_share=report.drift_share,
        most_shifted=[
            {"feature": f.name, "psi": f.psi, "statistic": f.statistic} for f in most_shifted
        ],
        window_size=report.window.size,
        window_start=report.window.start_time,
        window_end=report.window.end_time,
    ).warning(
        "drift verdict changed for {}; drifted now: {}",
        ", ".join(changed),
        ", ".join(report.drifted_features) or "none",
    )
