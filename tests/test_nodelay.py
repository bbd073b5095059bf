"""Connections accepted on a listening socket bound as uvicorn's --workers mode binds it
(``proto`` 0) get TCP_NODELAY from the server's protocol; asyncio alone leaves Nagle on."""

from __future__ import annotations

import asyncio
import socket

from uvicorn.config import Config
from uvicorn.server import ServerState

from modelobs.apps.nodelay import set_nodelay
from modelobs.apps.slow_clients import GuardedH11Protocol


def _nodelay_of_accepted(protocol: type[asyncio.Protocol], *args: object) -> int:
    """TCP_NODELAY of the server side of one connection to a proto-0 listening socket,
    accepted by ``protocol(*args)``."""

    async def run() -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # as uvicorn binds it
        listener.bind(("127.0.0.1", 0))
        assert listener.proto == 0
        accepted: asyncio.Future[asyncio.BaseTransport] = asyncio.get_running_loop().create_future()

        class Probe(protocol):  # type: ignore[valid-type, misc]
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                if not accepted.done():
                    accepted.set_result(transport)

        server = await asyncio.get_running_loop().create_server(lambda: Probe(*args), sock=listener)
        _, writer = await asyncio.open_connection(*listener.getsockname())
        transport = await asyncio.wait_for(accepted, 10)
        value = transport.get_extra_info("socket").getsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY
        )
        writer.close()
        transport.close()
        server.close()
        await server.wait_closed()
        return value

    return asyncio.run(run())


def test_asyncio_alone_leaves_nagle_on_for_a_proto_zero_listener() -> None:
    assert _nodelay_of_accepted(asyncio.Protocol) == 0  # the bug the protocol works around


def test_set_nodelay_turns_nagle_off() -> None:
    class Plain(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            set_nodelay(transport)

    assert _nodelay_of_accepted(Plain) != 0


def test_the_servers_http_protocol_turns_nagle_off() -> None:
    config = Config(app=lambda scope, receive, send: None, http=GuardedH11Protocol)
    config.load()
    state = ServerState()
    assert _nodelay_of_accepted(GuardedH11Protocol, config, state, {}) != 0
