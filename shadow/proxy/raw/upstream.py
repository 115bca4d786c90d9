"""The upstream side of the raw engine: an `UpstreamConnection` carries one exchange at a
time (response parsed with httptools, body streamed to the client, silence timed out),
and the `UpstreamPool` keeps the idle ones for reuse."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httptools

from shadow.proxy.raw.exchange import BodyMode, EngineSide, Exchange

#: idle upstream connections are closed after this: below Node.js' keepAliveTimeout (5 s)
IDLE_SECONDS = 4.0


class UpstreamConnection(asyncio.Protocol):
    """A keep-alive connection to the upstream, carrying one exchange at a time."""

    def __init__(self, proxy: EngineSide, pool: UpstreamPool) -> None:
        self.proxy = proxy
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.parser: Any = None
        self.reason = b""
        self.seen_bytes = False
        self.idle_since = 0.0
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._skip_interim = False
        self.held = False  # reading paused because the client reads slowly: not silence

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def touch(self) -> None:
        self._last = self.proxy.loop.time()

    # -- one exchange
    def attach(self, exchange: Exchange, head: bytes) -> None:
        self.exchange = exchange
        exchange.upstream = self
        self.held = False
        self.parser = httptools.HttpResponseParser(self)
        self.seen_bytes = False
        self.reason = b""
        self.touch()
        self._timer = self.proxy.loop.call_at(self._last + self.proxy.upstream_timeout, self._check_silence)
        pending = exchange.body_pending
        if pending:
            exchange.body_pending = []
            self.transport.write(head + b"".join(pending))  # type: ignore[union-attr]
            exchange.client.resume("pending")
        else:
            self.transport.write(head)  # type: ignore[union-attr]

    def release(self, reusable: bool) -> None:
        """The exchange is over: back to the pool for the next one, or closed."""
        self.detach()
        self.pool.release(self, reusable)

    def abandon(self) -> None:
        """The client went away mid-exchange: aborted, never pooled."""
        self.detach()
        self.pool.forget(self)
        if self.transport is not None:
            self.transport.abort()

    def detach(self) -> Exchange | None:
        exchange = self.exchange
        self.exchange = None
        if exchange is not None:
            exchange.upstream = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return exchange

    def _check_silence(self) -> None:
        self._timer = None
        if self.exchange is None:
            return
        deadline = self._last + self.proxy.upstream_timeout
        now = self.proxy.loop.time()
        if now < deadline or self.held:
            if self.held:
                deadline = now + self.proxy.upstream_timeout
            self._timer = self.proxy.loop.call_at(deadline, self._check_silence)
            return
        exchange = self.detach()
        if self.transport is not None:
            self.transport.abort()
        if exchange is not None:
            self.proxy.upstream_failed(exchange, None, timed_out=True, stale=False)

    # -- transport callbacks
    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:  # nothing asked: an idle connection talking is broken
            if self.transport is not None:
                self.transport.abort()
            return
        self.seen_bytes = True
        self._last = self.proxy.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as problem:
            exchange = self.detach()
            if self.transport is not None:
                self.transport.abort()
            if exchange is not None:
                self.proxy.upstream_failed(exchange, problem, timed_out=False, stale=False)
            return
        exchange.client.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.pool.forget(self)
        exchange = self.detach()
        if exchange is None:
            return
        if exchange.answered_head and exchange.close_delimited:
            self.exchange = exchange  # EOF is the end of this body
            exchange.upstream = self
            self.on_message_complete()
            return
        self.proxy.upstream_failed(exchange, exc or ConnectionResetError("upstream closed the connection"),
                                   timed_out=False, stale=exchange.reused and not self.seen_bytes)

    def pause_writing(self) -> None:  # the upstream reads the request body slower than it comes
        if self.exchange is not None:
            self.exchange.client.pause("upstream")

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.client.resume("upstream")

    # -- parser callbacks
    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.exchange is not None:
            self.exchange.response_headers.append((name, value))

    def on_headers_complete(self) -> None:
        exchange = self.exchange
        if exchange is None:
            return
        status = self.parser.get_status_code()
        if status < 200:  # an interim answer (103 Early Hints): not forwarded
            exchange.response_headers = []
            self.reason = b""
            self._skip_interim = True
            return
        self.proxy.answer_head(exchange, status, self.reason, self.parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        exchange = self.exchange
        if exchange is None or not exchange.answered_head:
            return
        client = exchange.client
        if exchange.mode is BodyMode.CHUNK:
            client.queue(b"%x\r\n%b\r\n" % (len(body), body))
        else:
            client.queue(body)
        if exchange.copy is not None:
            exchange.copy.add(body)
        if exchange.record is not None:
            exchange.record.add(body)

    def on_message_complete(self) -> None:
        if self._skip_interim:
            self._skip_interim = False
            return
        exchange = self.exchange
        if exchange is None or not exchange.answered_head or exchange.response_done:
            return
        self.proxy.answer_done(exchange)


class UpstreamPool:
    """The keep-alive connections to the upstream: busy ones carry an exchange, idle ones
    wait for the next (LIFO) and are closed after IDLE_SECONDS."""

    def __init__(self) -> None:
        self._idle: list[UpstreamConnection] = []
        self._busy: set[UpstreamConnection] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # RawProxy.open() sets it

    def take(self) -> UpstreamConnection | None:
        """An idle connection still open and not idle too long, now busy; None when there is none."""
        idle = self._idle
        now = self.loop.time()
        while idle:
            connection = idle.pop()
            if connection.transport is not None and not connection.transport.is_closing() \
                    and now - connection.idle_since < IDLE_SECONDS:
                self._busy.add(connection)
                return connection
            if connection.transport is not None:
                connection.transport.close()
        return None

    def hold(self, connection: UpstreamConnection) -> None:
        """A newly opened connection starts carrying an exchange."""
        self._busy.add(connection)

    def release(self, connection: UpstreamConnection, reusable: bool) -> None:
        """An exchange is over on `connection`: kept idle for the next, or closed."""
        self._busy.discard(connection)
        if not reusable or connection.transport is None or connection.transport.is_closing():
            if connection.transport is not None:
                connection.transport.close()
            return
        connection.idle_since = self.loop.time()
        if connection.held:  # paused for a slow client: read again, so talking while idle shows
            connection.held = False
            connection.transport.resume_reading()
        self._idle.append(connection)
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(IDLE_SECONDS, self._sweep)

    def forget(self, connection: UpstreamConnection) -> None:
        """`connection` is closed or being closed: neither busy nor idle any more."""
        self._busy.discard(connection)
        with contextlib.suppress(ValueError):
            self._idle.remove(connection)

    def close(self) -> None:
        """Aborts every connection, busy or idle."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for connection in [*self._idle, *self._busy]:
            if connection.transport is not None:
                connection.transport.abort()
        self._idle.clear()
        self._busy.clear()

    def _sweep(self) -> None:
        self._sweeper = None
        now = self.loop.time()
        keep = []
        for connection in self._idle:
            if now - connection.idle_since >= IDLE_SECONDS:
                if connection.transport is not None:
                    connection.transport.close()
            else:
                keep.append(connection)
        self._idle[:] = keep
        if keep:
            self._sweeper = self.loop.call_later(IDLE_SECONDS, self._sweep)
