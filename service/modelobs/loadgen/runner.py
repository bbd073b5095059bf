"""A bounded load generator: open-loop requests at a target rate, a progress display, and a
summary of status codes and latencies at the end."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .baggage import BAGGAGE_HEADER, baggage_header
from .scenarios import Request, Scenario


@dataclass
class LoadResult:
    """What happened, for the summary and for callers (tests, the native stack)."""

    statuses: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    finished: float = 0.0

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        return float(np.percentile(self.latencies_s, q) * 1000)

    def summary_table(self) -> Table:
        elapsed = (self.finished or time.monotonic()) - self.started
        table = Table(
            title=f"{self.sent} requests in {elapsed:.1f}s ({self.sent / max(elapsed, 1e-9):.1f}/s)"
        )
        table.add_column("status")
        table.add_column("count", justify="right")
        for status, count in sorted(self.statuses.items()):
            table.add_row(status, str(count))
        for q in (50, 90, 99):
            table.add_row(f"p{q} latency", f"{self.percentile_ms(q):.1f} ms")
        if self.latencies_s:
            table.add_row("max latency", f"{max(self.latencies_s) * 1000:.1f} ms")
        return table


async def _send(client: httpx.AsyncClient, request: Request, result: LoadResult) -> None:
    start = time.perf_counter()
    try:
        response = await client.request(
            request.method, request.path, content=request.body, headers=request.headers
        )
        status = str(response.status_code)
        if request.on_response is not None:
            request.on_response(response)
    except httpx.TimeoutException:
        status = "timeout"
    except httpx.TransportError as exc:
        status = type(exc).__name__
    result.latencies_s.append(time.perf_counter() - start)
    result.statuses[status] += 1


async def run_load(
    url: str,
    scenario: Scenario,
    *,
    rps: float,
    duration_s: float = 0.0,
    total: int = 0,
    concurrency: int = 64,
    timeout_s: float = 5.0,
    api_key: str | None = None,
    show_progress: bool = True,
) -> LoadResult:
    """Send until ``total`` requests or ``duration_s`` seconds (0 for both: until cancelled)."""
    result = LoadResult()
    # Every request says it is synthetic (W3C baggage, as the OpenTelemetry Demo's load
    # generator does): the services carry it onto spans, logs and a metric attribute.
    headers = {BAGGAGE_HEADER: baggage_header()}
    if api_key:
        headers["x-api-key"] = api_key
    limiter = asyncio.Semaphore(concurrency)
    console = Console(stderr=True)
    tasks: set[asyncio.Task[None]] = set()
    goal = total or (int(duration_s * rps) if duration_s else None)
    progress = Progress(
        TextColumn("[bold]load[/] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}" if goal else "{task.completed}"),
        TimeElapsedColumn(),
        console=console,
        disable=not show_progress,
        transient=False,
    )
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, headers=headers) as client:
        with progress:
            task_id = progress.add_task(scenario.describe(0.0), total=goal)
            interval = 1.0 / rps
            next_at = time.monotonic()
            index = 0
            try:
                while goal is None or index < goal:
                    await limiter.acquire()
                    request = scenario.request(index, time.monotonic() - result.started)
                    task = asyncio.create_task(_send(client, request, result))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    task.add_done_callback(lambda _: limiter.release())
                    index += 1
                    progress.update(
                        task_id,
                        completed=result.sent,
                        description=scenario.describe(time.monotonic() - result.started),
                    )
                    next_at += interval
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    elif delay < -1.0:
                        next_at = time.monotonic()  # fell behind: do not burst to catch up
            finally:
                if tasks:
                    await asyncio.gather(*tasks, return_exceptions=True)
                progress.update(task_id, completed=result.sent)
    result.finished = time.monotonic()
    scenario.finish(result.statuses)
    return result


def print_summary(result: LoadResult) -> None:
    Console(stderr=True).print(result.summary_table())
