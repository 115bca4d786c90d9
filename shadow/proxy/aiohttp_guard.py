"""The aiohttp engine's listening side with the request-path limits aiohttp lacks: each
client connection's aiohttp handler is wrapped in a `GuardedConnection` that times the
request head (408 and close), refuses heads over the size limits with 414/431 before
aiohttp parses them (every head of a pipeline: `HeadMeter`), hands aiohttp at most
PIPELINE_DEPTH pipelined requests ahead, and holds a slot under the connection cap.
Keep-alive idle is aiohttp's own `keepalive_timeout`. `serve_app` puts the admin app
behind the same guard, with its own cap.

The wrapper only forwards the asyncio Protocol calls to aiohttp's handler (no aiohttp
internals touched); the proxy's handler tells it when a request head is in
(`request_started`) and when its answer is out (`request_finished`).
"""
from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httptools
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from shadow.config import RequestLimits
from shadow.proxy.limits import LINGER_SECONDS, ConnectionSlots, Refused, refusal


class GuardHost(Protocol):
    """What a guarded listener's connections share: the limits, the connection cap, the
    connections' guards by aiohttp handler, and how refusals are counted. The proxy is
    one; the admin server has its own (`AppGuard`)."""

    limits: RequestLimits
    slots: ConnectionSlots
    guards: dict[Any, Any]
    #: how long a client may read nothing of its answers before it is cut (nginx: send_timeout)
    send_timeout: float

    def refused(self, method: bytes, status: int) -> None: ...


class ProxyHost(GuardHost, Protocol):
    """The aiohttp engine's `Proxy` as its listener sees it (shadow/proxy/aiohttp_engine.py:
    the engine imports this module, not the other way round)."""

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse: ...

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


#: complete request heads aiohttp may hold beyond the one being answered; the client's
#: further bytes wait (reading paused) until the pipeline shrinks
PIPELINE_DEPTH = 8
HEAD_END = b"\r\n\r\n"


class HeadMeter:
    """httptools (llhttp, the parser of aiohttp and of the raw engine) run over the bytes
    a guarded connection hands to aiohttp: where every request head of a pipeline ends
    and how large it is (aiohttp limits one header and the count, not a head in all,
    and the guard's own check sees only a connection's first head). Raises Refused
    (414/431) for a head over the limits, as the raw engine does."""

    def __init__(self, limits: RequestLimits) -> None:
        self.limits = limits
        self.parser = httptools.HttpRequestParser(self)
        self.heads = 0  # complete heads seen
        self.completed = False  # a message ended in the latest piece
        self.in_body = False  # between the latest head and the end of its message
        self._in_head = self._fresh = self._url_done = False
        self._bytes = self._line = self._count = self._block = 0

    def feed(self, piece: bytes) -> None:
        """One piece of the stream (at most one head ends in it)."""
        self.completed = False
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserCallbackError as problem:
            if isinstance(problem.__context__, Refused):
                raise problem.__context__ from None
            raise
        if self._in_head:  # a head still arriving: the bytes of it so far
            if self._fresh:  # begun in this piece: its share unknown, counted from the next
                self._fresh = False
                return
            self._bytes += len(piece)
            if self._bytes > self.limits.max_head_bytes:
                raise Refused(431 if self._url_done else 414, "request head too large")
            if not self._url_done and self._bytes > self.limits.max_request_line:
                raise Refused(414, "request line too long")

    # -- parser callbacks
    def on_message_begin(self) -> None:
        self._in_head = self._fresh = True
        self._url_done = False
        self._bytes = self._line = self._count = self._block = 0

    def on_url(self, url: bytes) -> None:
        self._line += len(url)
        if self._line > self.limits.max_request_line:
            raise Refused(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._url_done = True
        size = len(name) + len(value) + 4
        self._count += 1
        self._block += size
        limits = self.limits
        if size > limits.max_header_line or self._count > limits.max_header_count \
                or self._block > limits.max_header_block:
            raise Refused(431, "request headers too large")

    def on_headers_complete(self) -> None:
        self._in_head = False
        self.in_body = True
        self.heads += 1

    def on_message_complete(self) -> None:
        self.in_body = False
        self.completed = True


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

    def __init__(self, make_handler: Callable[[], Any], proxy: GuardHost) -> None:
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
        #: clear while the client's write buffer is full (it does not read its answers)
        self.writable = asyncio.Event()
        self.writable.set()
        # every head of a pipeline, measured and counted (HeadMeter); None once the
        # stream is no longer HTTP requests (an Upgrade), or after a refusal
        self._meter: HeadMeter | None = HeadMeter(self.limits)
        self._started = 0  # requests the handler has taken
        self._finished = 0  # ... and answered
        self._held = b""  # bytes past a full pipeline, handed over once it shrinks
        self._refusal_due = 0  # a pipelined head refused: answered after the ones before it
        self._heads_before_refusal = 0
        #: the handler has begun writing the current answer (set by the proxy)
        self.answering = False
        self._stalled: asyncio.TimerHandle | None = None  # cuts a client that stopped reading

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
        if self.handler is None or self.lingering or self._refusal_due:
            return
        if self._held:  # behind bytes still waiting for the pipeline to shrink
            self._held += data
            if self.transport is not None:
                self.transport.pause_reading()
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
        self._hand_over(data)

    def _hand_over(self, data: bytes) -> None:
        """Pass `data` to aiohttp a head at a time, measuring each head, and stop at a
        full pipeline (the rest is held, reading paused) or a refused head."""
        meter = self._meter
        if meter is None:
            if not self._refusal_due:
                self.handler.data_received(data)
            return
        start, size = 0, len(data)
        while start < size:
            if meter.heads - self._started >= PIPELINE_DEPTH:
                self._held = data[start:]
                if self.transport is not None:
                    self.transport.pause_reading()
                return
            end = data.find(HEAD_END, start)
            stop = size if end < 0 else end + 4
            piece = data if start == 0 and stop == size else data[start:stop]
            try:
                meter.feed(piece)
            except httptools.HttpParserUpgrade:
                self._meter = None  # what follows is not requests: aiohttp's to handle
                self.handler.data_received(data[start:])
                return
            except httptools.HttpParserError:
                self._meter = None
                if meter.in_body and self._finished == meter.heads - 1 and not self.answering:
                    # a body that cannot be read (bad chunk size) of the request being
                    # (or about to be) forwarded, nothing of its answer written: 400 and
                    # close, so the upstream never sees it end (as the raw engine; aiohttp
                    # would wait for more of it until --upstream-timeout)
                    log.debug("refused an unreadable request body")
                    self.proxy.refused(b"", 400)
                    self._close_with(refusal(400))
                    return
                # bytes aiohttp's own parser answers (garbage where a head should be)
                self.handler.data_received(data[start:])
                return
            except Refused as refused:
                self._meter = None
                if meter.completed:  # the piece also ends a body: aiohttp gets it and refuses the head itself
                    self.handler.data_received(data[start:])
                    return
                self._refuse_head(refused.status, meter.heads)
                return
            self.handler.data_received(piece)
            start = stop

    def _refuse_head(self, status: int, heads_before: int) -> None:
        """A head refused by the meter: the answer now when nothing is before it, else
        after the answers of the heads before it; input is dropped meanwhile."""
        log.debug("refused a request head (%d)", status)
        self.proxy.refused(b"", status)
        if self._finished >= heads_before:
            self._linger(refusal(status))
        else:
            self._refusal_due = status
            self._heads_before_refusal = heads_before

    def pause_writing(self) -> None:
        self.writable.clear()
        if self._stalled is None:
            self._stalled = asyncio.get_running_loop().call_later(self.proxy.send_timeout, self._write_stalled)
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.writable.set()
        self._unstall()
        if self.handler is not None:
            self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.writable.set()  # nothing waits for a gone client
        self._unstall()
        self._disarm()
        self.proxy.slots.release(self)
        if self.handler is not None:
            self.proxy.guards.pop(self.handler, None)
            self.handler.connection_lost(exc)
        self.transport = None

    def _unstall(self) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None

    def _write_stalled(self) -> None:
        """The client has read nothing of its answers for the send timeout: cut, so it
        cannot hold a connection slot (and an upstream connection) for ever."""
        self._stalled = None
        log.debug("a client stopped reading its answers: connection cut")
        if self.transport is not None:
            self.transport.abort()

    # -- told by the proxy's handler
    def request_started(self) -> None:
        self.state = HeadState.HANDLING
        self._disarm()
        self.proxy.slots.busy(self)
        self._started += 1
        self.answering = False
        if self._held and self.handler is not None and not self.lingering:
            held, self._held = self._held, b""
            if self.transport is not None:
                self.transport.resume_reading()
            self._hand_over(held)

    def request_finished(self) -> None:
        """The handler's answer is written (the handler completes it before saying so)."""
        self.state = HeadState.IDLE
        self._head.clear()
        self.proxy.slots.waiting(self)
        self._finished += 1
        self.answering = False
        if self._refusal_due and self._finished >= self._heads_before_refusal:
            self._linger(refusal(self._refusal_due))

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

    def __init__(self, runner: web.ServerRunner | web.AppRunner, listener: asyncio.AbstractServer) -> None:
        self.runner = runner
        self.listener = listener

    async def cleanup(self) -> None:
        self.listener.close()
        await self.runner.cleanup()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.listener.wait_closed(), 1.0)


async def serve(proxy: ProxyHost, host: str, port: int, drain_timeout: float) -> tuple[GuardedServer, int]:
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


class AppGuard:
    """The guard of a listener serving an aiohttp app (the admin server): its own limits
    and connection cap, refusals counted nowhere but the debug log."""

    def __init__(self, limits: RequestLimits) -> None:
        self.limits = limits
        self.slots = ConnectionSlots(limits.max_connections)
        self.guards: dict[Any, Any] = {}
        self.send_timeout = limits.header_timeout

    def refused(self, method: bytes, status: int) -> None:
        log.debug("admin: refused a request (%d)", status)

    def wrap(self, handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
             ) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
        """`handler`, telling the connection's guard when a request is in and out."""
        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            guard = self.guards.get(request.protocol)
            if guard is not None:
                guard.request_started()
            try:
                try:
                    response = await handler(request)
                except web.HTTPException as http:  # aiohttp's own answers (redirects, 401, 404)
                    response = http
                return await complete(request, response)
            finally:
                if guard is not None:
                    guard.request_finished()
        return handle


async def complete(request: web.BaseRequest, response: web.StreamResponse) -> web.StreamResponse:
    """Writes `response` out now (aiohttp would after the handler returns), so that what
    the guard writes after the handler comes after it."""
    if not response.prepared:
        await response.prepare(request)
    await response.write_eof()
    return response


async def serve_app(app: web.Application, host: str, port: int, limits: RequestLimits,
                    drain_timeout: float = 5.0) -> tuple[GuardedServer, int]:
    """Serve `app` behind a guard: the head size limits and header timeout, aiohttp's
    keep-alive timeout, and at most `limits.max_connections` connections (the longest
    idle one makes room; 503 when all are busy). For the admin server, so that silent
    or idle connections to it can neither pile up nor take the proxy's descriptors."""
    guard = AppGuard(limits)
    runner = web.AppRunner(app, access_log=None, logger=server_log, keepalive_timeout=limits.keepalive_timeout,
                           max_line_size=limits.max_request_line, max_field_size=limits.max_header_line,
                           max_headers=limits.max_header_count, shutdown_timeout=drain_timeout)
    await runner.setup()
    server = runner.server
    assert server is not None
    server.request_handler = guard.wrap(server.request_handler)
    loop = asyncio.get_running_loop()
    try:
        listener = await loop.create_server(lambda: GuardedConnection(server, guard), host, port, reuse_address=True)
    except BaseException:
        await runner.cleanup()
        raise
    bound = listener.sockets[0].getsockname()[1] if listener.sockets else port
    return GuardedServer(runner, listener), bound
