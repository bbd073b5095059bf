"""Synthetic traffic (the load generator's, marked with W3C baggage ``synthetic_request=true``)
told apart from real users' on spans, logs and metrics.

The baggage processors from ``opentelemetry-processor-baggage`` copy the allowed baggage
entries onto every span and log record made in the request's context; metrics get one
bounded attribute (``synthetic_request``: ``true`` or ``false``) from ``is_synthetic``, never
the raw baggage value (it is the caller's).
"""

from __future__ import annotations

from opentelemetry import baggage
from opentelemetry.processor.baggage import BaggageLogProcessor, BaggageSpanProcessor

SYNTHETIC_KEY = "synthetic_request"
# What a load generator's request may carry onto our spans and logs: the synthetic mark, and
# the fault flag that shaped the request (loadgen/baggage.py).
CARRIED_KEYS = frozenset({SYNTHETIC_KEY, "feature_flag.key", "feature_flag.result.variant"})


def _carried(key: str) -> bool:
    return key in CARRIED_KEYS


def span_processor() -> BaggageSpanProcessor:
    return BaggageSpanProcessor(_carried)


def log_processor() -> BaggageLogProcessor:
    return BaggageLogProcessor(_carried, max_baggage_attributes=len(CARRIED_KEYS))


def is_synthetic() -> bool:
    """True when the current request's baggage says it is synthetic."""
    return baggage.get_baggage(SYNTHETIC_KEY) == "true"


def synthetic_attribute() -> str:
    """The bounded metric attribute value: ``true`` or ``false``."""
    return "true" if is_synthetic() else "false"
