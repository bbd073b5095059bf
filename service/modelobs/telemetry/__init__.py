"""Telemetry shared by both apps: providers, logging, and HTTP server instrumentation."""

from .context import active_telemetry, current_telemetry, run_as, set_process_telemetry
from .logs import configure_logging
from .providers import Telemetry, build_telemetry

__all__ = [
    "Telemetry",
    "active_telemetry",
    "build_telemetry",
    "configure_logging",
    "current_telemetry",
    "run_as",
    "set_process_telemetry",
]
