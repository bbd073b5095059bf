"""The prediction log cannot be written (its directory read-only, its disk full): predictions
are still served, the failure is logged and counted, and writing resumes by itself when the
disk does. Real mechanisms, no mocks: a small tmpfs mounted for one model service (the tests
run as root), remounted read-only, or filled to ENOSPC by a filler file.

A mounted filesystem cannot turn read-only under a process that holds files on it open for
writing (the kernel answers EBUSY), so the read-only case is the one that happens in practice:
the service starts on a directory it cannot write (a read-only volume) that later becomes
writable.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import httpx
import pytest
from deploy.native.components import SPECS, resolve
from deploy.native.net import free_ports

from modelobs.loadgen.scenarios import Scenario
from modelobs.model.data import EXAMPLE_RECORD

from ..waiting import poll_until, wait_until
from .conftest import FaultStack
from .load import load_phase, scrape, total

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

NAME = "model-disk"
DROPPED = "modelobs_prediction_log_dropped_total"
# The service's ERROR lines for a log it cannot open or write (at most one per 5 s).
FAILED_EVENT = re.compile(r'"level":"ERROR".*"event":"prediction_log_(open|write)_failed"')


def _mount(path: Path, *options: str) -> None:
    subprocess.run(["mount", *options, str(path)], check=True, capture_output=True, text=True)


@contextmanager
def small_disk(stack: FaultStack, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` for the prediction log; unmounted afterwards."""
    mount = stack.cfg.run_dir / f"disk-{time.monotonic_ns()}"
    mount.mkdir()
    _mount(mount, "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)


@contextmanager
def model_service_on(stack: FaultStack, db: Path) -> Iterator[str]:
    """One more model service whose prediction log is ``db``; yields its URL."""
    (port,) = free_ports(1)
    process = resolve(
        SPECS["model-service"],
        stack.cfg,
        name=NAME,
        params={"port": str(port)},
        env={"MODELOBS_PREDICTION_DB": str(db)},
    )
    stack.add(process)
    try:
        yield stack.url(port)
    finally:
        stack.kill(NAME, graceful=True)


def _rows(db: Path) -> int:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT count(*) FROM predictions").fetchone()[0]


def _dropped(url: str) -> float:
    return total(scrape(f"{url}/metrics"), DROPPED, reason="write_error")


def _dropped_reaching(url: str, at_least: float, timeout_s: float = 10) -> float:
    """The dropped counter once it reaches ``at_least``, or its value at the deadline: the
    writer flushes every 0.1 s, so the last answers' rows are still in its buffer when a load
    phase ends (seen: 99 of 100 counted at the first scrape)."""
    seen = [_dropped(url)]
    poll_until(lambda: seen.append(_dropped(url)) or seen[-1] >= at_least, timeout_s, 0.1)
    return seen[-1]


def _served(url: str, name: str, seconds: float = 5):
    phase = load_phase(name, url, seconds, scenario=Scenario(path="/predict"))
    print(phase.line())
    return phase


def _wait_rows(db: Path, at_least: int, timeout_s: float = 20) -> int:
    """The rows of ``db`` once there are ``at_least``, or how many there are at the deadline."""
    rows = [0]

    def enough() -> bool:
        try:
            rows[0] = _rows(db) if db.exists() else 0
        except sqlite3.Error:
            rows[0] = 0
        return rows[0] >= at_least

    poll_until(enough, timeout_s, poll_s=0.2)
    return rows[0]


def _resumed(url: str, db: Path, timeout_s: float = 10) -> float:
    """Seconds until a prediction is written again (one request at a time meanwhile)."""
    t0 = time.monotonic()
    with httpx.Client() as client:

        def written() -> bool:
            client.post(f"{url}/predict", json={"record": EXAMPLE_RECORD}, timeout=5)
            return _wait_rows(db, 1, timeout_s=0.5) >= 1

        wait_until(written, "writing never resumed", timeout_s, poll_s=0)
    return time.monotonic() - t0


def _failure_logged(stack: FaultStack) -> int:
    return len(FAILED_EVENT.findall(stack.log_text(NAME)))


def test_read_only_prediction_log_keeps_serving_and_resumes(fault_stack: FaultStack) -> None:
    stack = fault_stack
    with small_disk(stack, "16m") as disk:
        _mount(disk, "-o", "remount,ro")
        db = disk / "predictions.db"
        with model_service_on(stack, db) as url:
            print()
            read_only = _served(url, "read-only")
            dropped = _dropped_reaching(url, read_only.sent)
            logged = _failure_logged(stack)
            _mount(disk, "-o", "remount,rw")
            resumed_s = _resumed(url, db)
            start_rows, start_dropped = _rows(db), _dropped(url)
            writable = _served(url, "writable")
            rows = _wait_rows(db, start_rows + writable.sent) - start_rows
            dropped_after = _dropped(url) - start_dropped
            print(
                f"dropped (write_error) {dropped:.0f}; failures logged {logged}; writing resumed "
                f"{resumed_s:.1f} s after the remount; then {rows} rows written of "
                f"{writable.sent} predictions, {dropped_after:.0f} dropped"
            )
            assert read_only.failed == writable.failed == 0
            assert dropped >= read_only.sent
            assert logged >= 1
            assert rows == writable.sent and dropped_after == 0, "writing did not resume"


def test_full_disk_prediction_log_keeps_serving_and_resumes(fault_stack: FaultStack) -> None:
    stack = fault_stack
    with small_disk(stack, "4m") as disk:
        db = disk / "predictions.db"
        with model_service_on(stack, db) as url:
            print()
            free = _served(url, "free", 3)
            assert _wait_rows(db, free.sent) >= free.sent
            filler = disk / "filler"
            with open(filler, "wb") as out:
                try:
                    while True:
                        out.write(b"\0" * 65536)
                        out.flush()
                except OSError:
                    pass  # ENOSPC: the disk is full
            before_dropped = _dropped(url)
            full = _served(url, "full")
            dropped = _dropped(url) - before_dropped
            logged = _failure_logged(stack)
            rows_full = _rows(db)
            os.remove(filler)
            freed = _served(url, "freed")
            rows = _wait_rows(db, rows_full + freed.sent)
            print(
                f"dropped (write_error) while full {dropped:.0f}; failures logged {logged}; "
                f"rows: {rows_full} when full, {rows} after"
            )
            assert free.failed == full.failed == freed.failed == 0
            assert dropped > 0
            assert logged >= 1
            assert rows >= rows_full + freed.sent, "writing did not resume once space was freed"
