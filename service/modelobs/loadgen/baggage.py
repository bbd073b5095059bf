"""The W3C baggage the load generator sends: ``synthetic_request=true`` on every request, and
the fault flag that shaped a request (``feature_flag.key``, ``feature_flag.result.variant``)
when one did, so the services can mark the spans of that request."""

from __future__ import annotations

from urllib.parse import quote

BAGGAGE_HEADER = "baggage"
SYNTHETIC_KEY = "synthetic_request"


def baggage_header(flag_key: str | None = None, variant: str | None = None) -> str:
    entries = {SYNTHETIC_KEY: "true"}
    if flag_key and variant:
        entries["feature_flag.key"] = flag_key
        entries["feature_flag.result.variant"] = variant
    return ",".join(f"{k}={quote(v, safe='')}" for k, v in entries.items())
