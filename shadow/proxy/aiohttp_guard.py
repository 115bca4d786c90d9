"""The aiohttp engine's listening side with the request-path limits aiohttp lacks: each
client connection's aiohttp handler is wrapped in a `GuardedConnection` that times the
request head (408 and close), refuses heads over the size limits with 414/431 before
aiohttp parses them, and holds a slot under the connection cap. Keep-alive idle is
aiohttp's own `keepalive_timeout`.

The wrapper only forwards the asyncio Protocol calls to aiohttp's handler (no aiohttp
internals touched); the proxy's handler tells it when a request head is in
(`request_started`) and when its answer is out (`request_finished`).
"""
from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from shadow.config import RequestLimits
from shadow.proxy.limits import LINGER_SECONDS, ConnectionSlots, Refused, refusal

if TYPE_CHECKING:
    from shadow.proxy.aiohttp_engine import Proxy

log = logging.getLogger("shadow.proxy.aiohttp_engine")


class _BadRequestsQuiet(logging.Filter):
    """aiohttp logs a request it cannot parse as an ERROR with a traceback: a client
    could fill the log with them. Those become one debug line; real errors stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        problem = record.exc_info[1] if record.exc_info else None
        if isinstance(problem, HttpProcessingError):
            log.debug("bad request: %s %s", problem.code, problem.message.splitlines()[0] if problem.message else "")
            return False
        return True


#: the logger of aiohttp's request handlers in this engine
server_log = logging.getLogger("shadow.proxy.aiohttp_engine.server")
server_log.addFilter(_BadRequestsQuiet())


class HeadState(enum.Enum):
    READING = "reading"  # a request head is arriving (or none yet on a new connection)
    READ = "read"  # its end (CRLF CRLF) was seen: aiohttp parses it
    HANDLING = "handling"  # the proxy is answering it
    IDLE = "idle"  # between requests (aiohttp's keep-alive timeout runs)


def check_partial_head(head: bytes, limits: RequestLimits) -> None:
    """Refuses a request head (complete or not) over a size limit: 414 for the request
    line, 431 for one header, the header count or all headers."""
    lines = head.split(b"\n")
    if len(lines[0]) > limits.max_request_line:
        raise Refused(414, "request line too long")
    if len(lines) == 1:
        return
    headers = [line for line in lines[1:] if line.strip(b"\r")]
    if len(headers) > limits.max_header_count:
        raise Refused(431, "too many headers")
    if any(len(line) > limits.max_header_line for line in headers):
        raise Refused(431, "header too long")
    if len(head) - len(lines[0]) > limits.max_header_block:
        raise Refused(431, "headers too large")


class GuardedConnection(asyncio.Protocol):
    """One client connection: aiohttp's handler inside, the limits around it."""

    def __init__(self, make_handler: Callable[[], Any], proxy: Proxy) -> None:
        self._make_handler = make_handler
        self.proxy = proxy
        self.limits = proxy.limits
        self.handler: Any = None
        self.transport: asyncio.Transport | None = None
        self.state = HeadState.READING
        self._head = bytearray()
        self._line_done = False  # the request line's end is in `_head`
        self.lingering = False  # refused: input is read and dropped until the close
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio Protocol, forwarded to aiohttp's handler
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self.proxy.slots.admit(self):  # every connection busy: no room
            self.proxy.refused(b"", 503)
            transport.write(refusal(503))  # type: ignore[attr-defined]
            transport.close()
            return
        self.handler = self._make_handler()
        self.proxy.guards[self.handler] = self
        self.handler.connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self.handler is None or self.lingering:
            return
        if self.state is HeadState.IDLE:
            self.state = HeadState.READING
            self._head.clear()
            self._line_done = False
            self._arm_head_timer()
        if self.state is HeadState.READING:
            start = max(0, len(self._head) - 3)
            self._head += data[:self.limits.max_head_bytes + 1]
            end = self._head.find(b"\r\n\r\n", start)
            if end >= 0:
                del self._head[end + 4:]
            elif not self._line_done:
                self._line_done = self._head.find(b"\n", start) >= 0
            try:
                # the whole head is split once, when complete: a head trickled byte by
                # byte costs a constant per read until then
                if end >= 0:
                    check_partial_head(bytes(self._head), self.limits)
                elif not self._line_done and len(self._head) > self.limits.max_request_line:
                    raise Refused(414, "request line too long")
                elif len(self._head) > self.limits.max_head_bytes:
                    raise Refused(431, "request head too large")
            except Refused as refused:
                log.debug("refused a request: %s", refused)
                self.proxy.refused(b"", refused.status)
                self._linger(refusal(refused.status))
                return
            if end >= 0:
                self.state = HeadState.READ
                self._head.clear()
                self._line_done = False
        self.handler.data_received(data)

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.proxy.slots.release(self)
        if self.handler is not None:
            self.proxy.guards.pop(self.handler, None)
            self.handler.connection_lost(exc)
        self.transport = None

    # -- told by the proxy's handler
    def request_started(self) -> None:
        self.state = HeadState.HANDLING
        self._disarm()
        self.proxy.slots.busy(self)

    def request_finished(self) -> None:
        self.state = HeadState.IDLE
        self._head.clear()
        self.proxy.slots.waiting(self)

    # -- limits
    def evict(self) -> None:
        """Room is needed for a new connection and this one has waited longest for a head."""
        if self._head:
            self.proxy.refused(b"", 408)
        self._close_with(refusal(408) if self._head else b"")

    def _arm_head_timer(self) -> None:
        self._disarm()
        self._timer = asyncio.get_running_loop().call_later(self.limits.header_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if self.state is HeadState.READING:
            self.proxy.refused(b"", 408)
            self._close_with(refusal(408))

    def _linger(self, answer: bytes) -> None:
        """Refuse: the answer and our side closed now, the connection once the client
        closes its side or after LINGER_SECONDS (closing with unread input would reset
        the connection and could destroy the answer); aiohttp's handler sees no more."""
        transport = self.transport
        if transport is None or transport.is_closing() or not transport.can_write_eof():
            self._close_with(answer)
            return
        self._disarm()
        self.lingering = True
        transport.write(answer)
        transport.write_eof()
        transport.resume_reading()
        self._timer = asyncio.get_running_loop().call_later(LINGER_SECONDS, self._close_with, b"")

    def eof_received(self) -> bool | None:
        if self.lingering:
            return None  # the client closed its side: the transport closes
        return self.handler.eof_received() if self.handler is not None else None

    def _close_with(self, answer: bytes) -> None:
        self._disarm()
        if self.transport is not None and not self.transport.is_closing():
            if answer:
                self.transport.write(answer)
            self.transport.close()


class GuardedServer:
    """The aiohttp engine's listener; `cleanup()` stops accepting, then drains like
    aiohttp's runner (in-flight requests get the drain timeout)."""

    def __init__(self, runner: web.ServerRunner, listener: asyncio.AbstractServer) -> None:
        self.runner = runner
        self.listener = listener

    async def cleanup(self) -> None:
        self.listener.close()
        await self.runner.cleanup()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.listener.wait_closed(), 1.0)


async def serve(proxy: Proxy, host: str, port: int, drain_timeout: float) -> tuple[GuardedServer, int]:
    """Listen; returns the server (cleanup() drains in-flight requests) and the port."""
    limits = proxy.limits
    proxy.slots = ConnectionSlots(limits.connection_cap())
    server = web.Server(proxy.handle, handler_cancellation=True, access_log=None, logger=server_log,
                        keepalive_timeout=limits.keepalive_timeout, max_line_size=limits.max_request_line,
                        max_field_size=limits.max_header_line, max_headers=limits.max_header_count)
    runner = web.ServerRunner(server, shutdown_timeout=drain_timeout)
    await runner.setup()
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: GuardedConnection(server, proxy), host, port, backlog=1024,
                                        reuse_address=True)
    bound = listener.sockets[0].getsockname()[1] if listener.sockets else port
    return GuardedServer(runner, listener), bound
