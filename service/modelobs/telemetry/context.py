"""Which service's telemetry the running code belongs to.

Log sinks are process-wide (loguru has one logger), but two apps can share a process in
tests, so each request marks its own ``Telemetry`` here and the sinks read it.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .providers import Telemetry

current_telemetry: ContextVar[Telemetry | None] = ContextVar("current_telemetry", default=None)
_process_default: list[Telemetry] = []


def set_process_telemetry(telemetry: Telemetry) -> None:
    """The telemetry used outside any request (start-up, background threads)."""
    _process_default[:] = [telemetry]


def active_telemetry() -> Telemetry | None:
    found = current_telemetry.get()
    if found is not None:
        return found
    return _process_default[0] if _process_default else None
