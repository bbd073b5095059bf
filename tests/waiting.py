"""Waiting on a condition with a deadline (never a fixed sleep in a test)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any


def poll_until(check: Callable[[], Any], timeout_s: float, poll_s: float = 0.02) -> Any:
    """``check()``'s first truthy answer, or its last answer at the deadline (for callers that
    build their own failure from it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = check()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(poll_s)  # the poll interval of a wait with a deadline


def wait_until(
    check: Callable[[], Any],
    what: str | Callable[[], str],
    timeout_s: float = 10.0,
    poll_s: float = 0.02,
) -> Any:
    """``check()``'s first truthy answer, or a failure naming ``what`` after the deadline
    (``what`` may be a callable, for a message built from the state at the deadline)."""
    answer = poll_until(check, timeout_s, poll_s)
    assert answer, _late(what, timeout_s)
    return answer


def _late(what: str | Callable[[], str], timeout_s: float) -> str:
    return f"{what() if callable(what) else what}: not within {timeout_s}s"


async def wait_until_async(
    check: Callable[[], Awaitable[Any]],
    what: str | Callable[[], str],
    timeout_s: float = 10.0,
    poll_s: float = 0.02,
) -> Any:
    """``wait_until`` inside an event loop: awaits ``check()`` and yields to the loop between
    polls, so the tasks it waits on (a load, a server) keep running."""
    deadline = time.monotonic() + timeout_s
    while not (answer := await check()):
        assert time.monotonic() < deadline, _late(what, timeout_s)
        await asyncio.sleep(poll_s)
    return answer


def wait_behind_markers(
    send_marker: Callable[[], str],
    arrived: Callable[[str], Any],
    what: str,
    timeout_s: float,
    poll_s: float = 0.5,
) -> None:
    """Wait until a pipeline has handed out everything that entered it before now, so that
    what did not come out can be asserted absent: two markers sent through the same pipeline,
    the second only once the first is out. One is not enough where a stage works in rounds
    (the tail sampler decides a second's worth of traces at a time, in no set order): the
    first marker can leave in the same round as items just ahead of it; the second enters
    after that round has begun, so it leaves in a later one, after them.
    ``send_marker`` returns the marker's id, ``arrived(id)`` says whether it is out."""
    for nth in ("first", "second"):
        marker = send_marker()
        out = functools.partial(arrived, marker)
        wait_until(out, f"{what} ({nth} marker {marker})", timeout_s, poll_s)
