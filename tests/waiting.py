"""Waiting on a condition with a deadline (never a fixed sleep in a test)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def poll_until(check: Callable[[], Any], timeout_s: float, poll_s: float = 0.02) -> Any:
    """``check()``'s first truthy answer, or its last answer at the deadline (for callers that
    build their own failure from it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = check()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(poll_s)


def wait_until(
    check: Callable[[], Any],
    what: str | Callable[[], str],
    timeout_s: float = 10.0,
    poll_s: float = 0.02,
) -> Any:
    """``check()``'s first truthy answer, or a failure naming ``what`` after the deadline
    (``what`` may be a callable, for a message built from the state at the deadline)."""
    answer = poll_until(check, timeout_s, poll_s)
    assert answer, f"{what() if callable(what) else what}: not within {timeout_s}s"
    return answer
