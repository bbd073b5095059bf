"""Time-ordered prediction ids (UUIDv7, RFC 9562), so feedback can tell a fresh id from a wrong one.

A label may reach a replica before the replica that made the prediction has written it
to the shared store. The id's own timestamp says whether that is possible: a store miss
for an id minted a moment ago is waited for briefly, one for an old or random id is a
404 at once. Python 3.11's ``uuid`` has no ``uuid7`` (it arrives in 3.14), hence these
few lines.
"""

from __future__ import annotations

import os
import time
import uuid

_RANDOM_BITS = 74  # 12 (rand_a) + 62 (rand_b)


def new_prediction_id() -> str:
    """A UUIDv7: 48-bit Unix milliseconds, version 7, variant 10, 74 random bits."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big") >> (80 - _RANDOM_BITS)
    value = (
        (millis & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | (rand >> 62) << 64
        | 0b10 << 62
        | (rand & ((1 << 62) - 1))
    )
    return str(uuid.UUID(int=value))


def id_time(prediction_id: str) -> float | None:
    """When a UUIDv7 id was minted (Unix seconds); None for any other string."""
    try:
        parsed = uuid.UUID(prediction_id)
    except ValueError:
        return None
    if parsed.version != 7:
        return None
    return (parsed.int >> 80) / 1000
