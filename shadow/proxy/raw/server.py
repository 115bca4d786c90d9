"""The listening side of the raw engine: `serve()` accepts client connections, and
`RawServer.cleanup()` drains them on shutdown."""
from __future__ import annotations

import asyncio
import contextlib

from shadow.proxy.raw.client import ClientConnection
from shadow.proxy.raw.engine import RawProxy


class RawServer:
    """The listening side of the raw engine; `cleanup()` drains like aiohttp's runner:
    stop accepting, close idle keep-alive connections, wait for in-flight requests up
    to the drain timeout, then close what is left."""

    def __init__(self, proxy: RawProxy, server: asyncio.AbstractServer, drain_timeout: float) -> None:
        self.proxy = proxy
        self.server = server
        self.drain_timeout = drain_timeout

    async def cleanup(self) -> None:
        self.server.close()
        for connection in list(self.proxy.connections):
            connection.closing = True
            if connection.idle and connection.transport is not None:
                connection.transport.close()
        await self.proxy.wait_idle(self.drain_timeout)
        for connection in list(self.proxy.connections):
            if connection.transport is not None:
                connection.transport.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 1.0)


async def serve(proxy: RawProxy, host: str, port: int, drain_timeout: float) -> tuple[RawServer, int]:
    """Listen; returns the server (cleanup() drains in-flight requests) and the port."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ClientConnection(proxy), host, port, backlog=1024, reuse_address=True)
    bound = server.sockets[0].getsockname()[1] if server.sockets else port
    return RawServer(proxy, server, drain_timeout), bound
