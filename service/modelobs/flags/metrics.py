"""``modelobs.feature_flag.active``: 1 for every fault flag switched on, 0 when off.

One series per declared flag (label ``feature_flag.key``, from definitions.py only: bounded),
so a dashboard can draw flag switches as annotations and an alert can tell a drill from an
incident. The variant is not a label: an operator may declare variants of their own.
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from .client import KEY, FaultFlags

ACTIVE_GAUGE = "modelobs.feature_flag.active"


def register_active_gauge(meter: Meter, flags: FaultFlags) -> None:
    def observe(_options: CallbackOptions) -> Iterable[Observation]:
        for key, variant in flags.active().items():
            yield Observation(0 if variant == "off" else 1, {KEY: key})

    meter.create_observable_gauge(
        ACTIVE_GAUGE,
        callbacks=[observe],
        unit="{flag}",
        description="1 while a run-time fault flag is switched on (any variant but off)",
    )
