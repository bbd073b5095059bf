"""What the fault flags do inside the services: the model service's inference faults and the
gateway's faulty hop to the model service. Each marks the span it affected."""

from __future__ import annotations

import asyncio

import httpx
from opentelemetry import trace
from opentelemetry.trace import Span

from .client import FaultFlags


class InjectedFault(RuntimeError):
    """Raised by the ``inference-errors`` flag: a failure drills can switch on."""


class InferenceFaults:
    """Latency, errors and a slow memory leak in the model service's inference step."""

    def __init__(self, flags: FaultFlags) -> None:
        self.flags = flags
        # The leak: kept while ``memory-leak`` is on, released once it is off.
        self._leaked: list[bytes] = []

    @property
    def leaked_bytes(self) -> int:
        return sum(len(b) for b in self._leaked)

    async def apply(self, span: Span) -> None:
        """Called inside the inference span, before the model runs."""
        latency = self.flags.evaluate("inference-latency")
        if latency.hits():
            latency.mark(span)
            await asyncio.sleep(float(latency.get("delay_ms", 0)) / 1000)
        errors = self.flags.evaluate("inference-errors")
        if errors.hits():
            errors.mark(span)
            raise InjectedFault(f"fault injected by flag inference-errors ({errors.variant})")
        leak = self.flags.evaluate("memory-leak")
        size = int(leak.get("bytes_per_request", 0) or 0)
        if leak.on and size > 0:
            leak.mark(span)
            # Written bytes (not a lazily zeroed buffer), so the resident size really grows.
            self._leaked.append(b"\x01" * size)
        elif not leak.on and self._leaked:
            self._leaked.clear()


class FaultyHopTransport(httpx.AsyncBaseTransport):
    """The gateway's transport to the model service, slowed or failed by ``model-hop``.

    It runs inside the HTTP client span the client instrumentation (ours,
    telemetry/http_client.py, or the httpx instrumentation's) opens for each attempt,
    so the flag lands on the span of the hop it slowed or failed; a failed attempt raises
    the error a refused connection raises, and the gateway's retries see a real failure.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, flags: FaultFlags) -> None:
        self.inner = inner
        self.flags = flags

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        hop = self.flags.evaluate("model-hop")
        if hop.hits():
            span = trace.get_current_span()
            hop.mark(span)
            delay_ms = float(hop.get("delay_ms", 0) or 0)
            if delay_ms:
                await asyncio.sleep(delay_ms / 1000)
            if hop.get("fail"):
                raise httpx.ConnectError(
                    "connection refused (fault injected by flag model-hop)", request=request
                )
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
