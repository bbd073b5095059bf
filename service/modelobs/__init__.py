"""modelobs: an OpenTelemetry-first observability reference stack for model services."""

__version__ = "0.1.0"
