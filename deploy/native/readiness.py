"""Wait until a started process answers its ready check, or say why it never does."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

LOG_TAIL_LINES = 25
# Without a ready URL a process counts as started once it has lived this long.
SETTLE_S = 1.0


class NotReady(RuntimeError):
    """The process exited or never answered; the message ends with its log's last lines."""


def probe(url: str, timeout_s: float = 2.0) -> str | None:
    """None when ``url`` answers 200, else what it answered instead."""
    try:
        code = httpx.get(url, timeout=timeout_s).status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return None if code == 200 else f"HTTP {code}"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (empty log)"


def wait_ready(
    url: str | None,
    proc: subprocess.Popen[bytes],
    log: Path,
    timeout_s: float = 60.0,
    name: str | None = None,
) -> None:
    """Until ``url`` answers 200 (without a URL: until ``proc`` has lived SETTLE_S).

    Raises NotReady as soon as the process exits, or at the deadline."""
    name = name or url or str(proc.args)
    started = time.monotonic()
    deadline = started + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text(errors="replace").lower() if log.exists() else ""
            hint = " (address already in use)" if "address already in use" in text else ""
            raise NotReady(
                f"{name} exited with code {proc.returncode} while starting{hint}; "
                f"last lines of {log}:\n{log_tail(log)}"
            )
        if url is None:
            if time.monotonic() - started >= SETTLE_S:
                return
        else:
            problem = probe(url)
            if problem is None:
                return
            last = problem
        time.sleep(0.2)
    raise NotReady(
        f"{name} not ready after {timeout_s:.0f}s ({url}: {last}); "
        f"last lines of {log}:\n{log_tail(log)}"
    )
