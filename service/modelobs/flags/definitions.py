"""The fault flags, in flagd's flag-definition format (https://flagd.dev/reference/schema/).

Each flag is an object flag whose variants say what a request touched by it gets; ``off``
is every flag's default. The file the services watch is written from ``default_document``
and switched by ``store.switch``, so the keys and variants here are the only ones that can
appear in a metric label (``feature_flag_key``) or a span attribute set by the services.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OFF = "off"


@dataclass(frozen=True)
class FlagDefinition:
    """One fault flag: its key, what it breaks, and its variants (``off`` first)."""

    key: str
    description: str
    variants: dict[str, dict[str, Any]]
    # Which side acts on it: "model-service", "gateway" or "load" (the load generator).
    acted_on_by: str

    @property
    def off_value(self) -> dict[str, Any]:
        return self.variants[OFF]


FLAGS: tuple[FlagDefinition, ...] = (
    FlagDefinition(
        "inference-latency",
        "adds delay_ms to a share of model inference calls",
        # 30 % at 1.2 s: the p99 crosses the 1 s alert threshold, and tail sampling keeps
        # every slowed trace (its latency policy keeps traces over 500 ms).
        {OFF: {"share": 0.0, "delay_ms": 0}, "on": {"share": 0.3, "delay_ms": 1200}},
        "model-service",
    ),
    FlagDefinition(
        "inference-errors",
        "fails a share of model inference calls (500 from the model service)",
        {OFF: {"share": 0.0}, "on": {"share": 0.5}},
        "model-service",
    ),
    FlagDefinition(
        "model-hop",
        "the gateway's call to the model service: slow (delay_ms) or failing (connection "
        "refused on a share of attempts)",
        {
            OFF: {"share": 0.0, "delay_ms": 0, "fail": False},
            "slow": {"share": 0.3, "delay_ms": 1200, "fail": False},
            "failing": {"share": 1.0, "delay_ms": 0, "fail": True},
        },
        "gateway",
    ),
    FlagDefinition(
        "memory-leak",
        "the model service keeps bytes_per_request bytes per prediction until switched off",
        {OFF: {"bytes_per_request": 0}, "on": {"bytes_per_request": 256 * 1024}},
        "model-service",
    ),
    FlagDefinition(
        "feature-shift",
        "the load generator shifts features by shift_sd standard deviations",
        {
            OFF: {"shift_sd": 0.0, "features": []},
            "on": {"shift_sd": 2.0, "features": ["monthly_charges", "tenure_months"]},
        },
        "load",
    ),
    FlagDefinition(
        "label-shift",
        "the load generator's feedback labels say 'churn' with probability churn_share",
        {OFF: {"churn_share": None}, "on": {"churn_share": 0.9}},
        "load",
    ),
)

BY_KEY: dict[str, FlagDefinition] = {f.key: f for f in FLAGS}


def default_document() -> dict[str, Any]:
    """The flag file with every flag off (flagd's schema)."""
    return {
        "$schema": "https://flagd.dev/schema/v0/flags.json",
        "flags": {
            f.key: {
                "state": "ENABLED",
                "variants": f.variants,
                "defaultVariant": OFF,
                "metadata": {"description": f.description, "acted_on_by": f.acted_on_by},
            }
            for f in FLAGS
        },
    }
