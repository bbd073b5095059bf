"""The service process's resident memory as the semantic-convention instrument
``process.memory.usage`` (bytes), so a leak shows as a steady climb (alert ProcessMemoryGrowing).

Read with psutil when the metric reader collects, never on the request path.
opentelemetry-instrumentation-system-metrics has the same instrument, but it is a process-wide
BaseInstrumentor singleton bound to one meter provider: the second app built in a process (both
apps in the tests, or one app per provider) would not get it, and it brings a dozen other
instruments nobody charts.
"""

from __future__ import annotations

import psutil
from opentelemetry import metrics


def register_process_memory(meter: metrics.Meter) -> None:
    process = psutil.Process()

    def observe(_: metrics.CallbackOptions) -> list[metrics.Observation]:
        return [metrics.Observation(process.memory_info().rss)]

    meter.create_observable_up_down_counter(
        "process.memory.usage",
        callbacks=[observe],
        unit="By",
        description="Resident memory of the service process",
    )
