"""TCP_NODELAY on every accepted connection, whoever created the listening socket.

asyncio turns Nagle's algorithm off only on sockets whose ``proto`` is ``IPPROTO_TCP``.
uvicorn's ``--workers`` mode binds the listening socket itself as ``socket.socket(family)``
(``proto`` 0), so the workers' connections kept Nagle on: h11 writes a response's head and
body in two sends, the second waited for the client's delayed ACK, and every request on a
kept-alive connection took ~40 ms more (measured: ``--workers 2`` answered at a p50 of 44 ms
against 15 ms with one worker, bench/telemetry_overhead.py). One worker is unaffected
(asyncio binds that socket through getaddrinfo, ``proto`` 6); setting the option again there
changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Turn Nagle's algorithm off on the transport's TCP socket (no-op for other sockets)."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    if sock.type != socket.SOCK_STREAM:
        return
    with contextlib.suppress(OSError):  # the peer is already gone: nothing to speed up
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
