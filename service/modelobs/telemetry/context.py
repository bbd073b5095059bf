"""Which service's telemetry the running code belongs to.

Log sinks are process-wide (loguru has one logger), but two apps can share a process in
tests, so each request marks its own ``Telemetry`` here and the sinks read it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, ParamSpec, TypeVar

if TYPE_CHECKING:
    from .providers import Telemetry

P = ParamSpec("P")
R = TypeVar("R")
current_telemetry: ContextVar[Telemetry | None] = ContextVar("current_telemetry", default=None)
_process_default: list[Telemetry] = []


def set_process_telemetry(telemetry: Telemetry) -> None:
    """The telemetry used outside any request (start-up, background threads)."""
    _process_default[:] = [telemetry]


def run_as(telemetry: Telemetry, fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``fn`` so that whatever it logs from another thread belongs to ``telemetry``."""

    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        token = current_telemetry.set(telemetry)
        try:
            return fn(*args, **kwargs)
        finally:
            current_telemetry.reset(token)

    return wrapped


def active_telemetry() -> Telemetry | None:
    found = current_telemetry.get()
    if found is not None:
        return found
    return _process_default[0] if _process_default else None
