"""Waiting on a condition with a deadline (never a fixed sleep in a test)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(
    check: Callable[[], Any], what: str, timeout_s: float = 10.0, poll_s: float = 0.02
) -> Any:
    """``check()``'s first truthy answer, or a failure naming ``what`` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = check()
        if answer or time.monotonic() > deadline:
            assert answer, f"{what}: not within {timeout_s}s"
            return answer
        time.sleep(poll_s)
