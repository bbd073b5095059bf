"""A small HTTP/1.1 proxy on a real socket that breaks connections the way networks and
servers do, for the gateway's forwarding tests.

It reads each request whole (Content-Length bodies, as httpx sends them), and a ``plan``
decides per request what happens to it:

* ``Fault.NONE``: forwarded, and the answer relayed;
* ``Fault.DROP_ANSWER``: forwarded, the model service's whole answer read, then the caller's
  connection closed without it (the request was served; the caller cannot know);
* ``Fault.CLOSE_UNSENT``: the caller's connection closed as soon as the request arrives, never
  forwarded (a keep-alive connection the server closed just as the caller reused it).

``Traffic`` counts what happened, so a test can check its fault really occurred.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum


class Fault(Enum):
    NONE = "none"
    DROP_ANSWER = "drop_answer"
    CLOSE_UNSENT = "close_unsent"


@dataclass(frozen=True)
class Arrival:
    """Which request this is: overall, and on its client connection (2+ = a reused one)."""

    number: int
    on_connection: int


@dataclass
class Traffic:
    connections: int = 0
    forwarded: int = 0
    faults: list[Fault] = field(default_factory=list)


Plan = Callable[[Arrival], Fault]


async def _read_message(reader: asyncio.StreamReader) -> bytes | None:
    """One HTTP/1.1 message (head and Content-Length body); None at a clean end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"transfer-encoding":
            # httpx and uvicorn frame these JSON bodies with Content-Length; a chunked one
            # means the test set-up changed, so say so instead of forwarding half a message.
            raise ValueError("this proxy forwards Content-Length framed messages only")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return head + await reader.readexactly(length)


class FaultyProxy:
    def __init__(self, upstream_port: int, plan: Plan) -> None:
        self.upstream_port = upstream_port
        self.plan = plan
        self.traffic = Traffic()
        self._arrivals = 0
        self._handlers: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(task)

    async def cancel_handlers(self) -> None:
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.traffic.connections += 1
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        on_connection = 0
        try:
            while (request := await _read_message(reader)) is not None:
                on_connection += 1
                self._arrivals += 1
                fault = self.plan(Arrival(self._arrivals, on_connection))
                if fault is Fault.CLOSE_UNSENT:
                    self.traffic.faults.append(fault)
                    return
                if upstream is None:
                    upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
                upstream[1].write(request)
                await upstream[1].drain()
                answer = await _read_message(upstream[0])
                self.traffic.forwarded += 1
                if answer is None or fault is Fault.DROP_ANSWER:
                    self.traffic.faults.append(fault)
                    return
                writer.write(answer)
                await writer.drain()
        finally:
            for stream in (writer, upstream[1] if upstream else None):
                if stream is not None:
                    stream.close()
                    with contextlib.suppress(ConnectionError):
                        await stream.wait_closed()


@contextlib.contextmanager
def faulty_proxy(upstream_port: int, plan: Plan) -> Iterator[tuple[str, Traffic]]:
    """Run a FaultyProxy on its own event loop thread; yield its URL and its traffic."""
    proxy = FaultyProxy(upstream_port, plan)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, asyncio.Server] = {}

    async def start() -> None:
        holder["server"] = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
        started.set()

    def run() -> None:
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not started.wait(timeout=10):
        raise RuntimeError("proxy did not start")
    port = holder["server"].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", proxy.traffic
    finally:

        async def stop() -> None:
            holder["server"].close()
            await proxy.cancel_handlers()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
