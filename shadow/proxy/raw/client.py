"""The client side of the raw engine: one `ClientConnection` per client connection parses
requests with httptools, holds pipelined ones until their turn, streams request bodies
upstream, and writes the answers back in order."""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from email.utils import formatdate
from typing import TYPE_CHECKING

import httptools

from shadow.proxy.raw.exchange import Exchange

if TYPE_CHECKING:
    from shadow.proxy.raw.engine import RawProxy

log = logging.getLogger("shadow.proxy.raw")

PENDING_LIMIT = 256 * 1024


class ClientConnection(asyncio.Protocol):
    """A client connection: parses requests (pipelined ones wait their turn) and writes
    the answers back in order."""

    def __init__(self, proxy: "RawProxy") -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.parsing: Exchange | None = None
        self.current: Exchange | None = None
        self.waiting: collections.deque[Exchange] = collections.deque()
        self.peer = ""
        self.closing = False
        self._pauses: set[str] = set()
        self._out: list[bytes] = []

    # -- transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else ""
        self.proxy.connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.closing = True  # no Upgrade/CONNECT tunnel: answer this request, then close
            self.pause("upgrade")
        except httptools.HttpParserError as problem:
            log.debug("bad request from %s: %s", self.peer, problem)
            broken, self.parsing = self.parsing, None
            if self.current is None:
                self._write_plain(400, "Bad Request", b"400 Bad Request\n", head_only=False, close=True)
            elif broken is self.current or broken in self.waiting:  # a request body cut: nothing to answer
                if self.transport is not None:
                    self.transport.close()
            else:  # garbage after a good request: answer that one, then close
                self.closing = True
                self.pause("bad request")

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy.connections.discard(self)
        self.transport = None
        for exchange in (self.current, *self.waiting):
            if exchange is not None:
                self.proxy.abandon(exchange)
        self.current = None
        self.waiting.clear()

    def pause_writing(self) -> None:  # the client reads slower than the upstream sends
        exchange = self.current
        if exchange is not None and exchange.upstream is not None and exchange.upstream.transport is not None:
            exchange.upstream.held = True
            exchange.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        exchange = self.current
        if exchange is not None and exchange.upstream is not None and exchange.upstream.transport is not None:
            exchange.upstream.held = False
            exchange.upstream.touch()
            exchange.upstream.transport.resume_reading()

    def pause(self, reason: str) -> None:
        if not self._pauses and self.transport is not None:
            self.transport.pause_reading()
        self._pauses.add(reason)

    def resume(self, reason: str) -> None:
        if reason in self._pauses:
            self._pauses.discard(reason)
            if not self._pauses and self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    # -- parser callbacks
    def on_message_begin(self) -> None:
        self.parsing = Exchange(self)
        self.parsing.started = time.perf_counter()

    def on_url(self, url: bytes) -> None:
        self.parsing.target += url  # type: ignore[union-attr]

    def on_header(self, name: bytes, value: bytes) -> None:
        self.parsing.headers.append((name, value))  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        exchange = self.parsing
        assert exchange is not None
        parser = self.parser
        exchange.method = parser.get_method()
        exchange.http10 = parser.get_http_version() == "1.0"
        exchange.keep_alive = parser.should_keep_alive() and not self.closing
        chunked = has_body = False
        for name, value in exchange.headers:
            lowered = name.lower()
            if lowered == b"transfer-encoding":
                chunked = chunked or b"chunked" in value.lower()
                has_body = True
            elif lowered == b"content-length":
                has_body = has_body or value.strip() not in (b"0", b"")
        exchange.chunked_request = chunked
        exchange.has_body = has_body
        if self.current is None:
            self.current = exchange
            self.proxy.dispatch(exchange)
        else:  # pipelined: answered after the ones before it; read no further meanwhile
            self.waiting.append(exchange)
            self.pause("pipelined")

    def on_body(self, body: bytes) -> None:
        exchange = self.parsing
        if exchange is None or exchange.response_done:
            return  # answered already (the upstream did not wait for the body): dropped
        upstream = exchange.upstream
        data = b"%x\r\n%b\r\n" % (len(body), body) if exchange.chunked_request else body
        if upstream is not None and upstream.transport is not None:
            upstream.touch()
            upstream.transport.write(data)
        else:  # still connecting (or waiting its turn): kept, and reading stops past 256 KiB
            exchange.body_pending.append(data)
            if sum(map(len, exchange.body_pending)) > PENDING_LIMIT:
                self.pause("pending")

    def on_message_complete(self) -> None:
        exchange = self.parsing
        self.parsing = None
        if exchange is None:
            return
        exchange.request_done = True
        if exchange.chunked_request:
            if exchange.upstream is not None and exchange.upstream.transport is not None:
                exchange.upstream.transport.write(b"0\r\n\r\n")
            else:
                exchange.body_pending.append(b"0\r\n\r\n")
        if exchange.response_done and exchange is self.current:
            self.next_exchange()

    # -- answers
    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def next_exchange(self) -> None:
        """The current exchange is over both ways: close, or start the next one."""
        done = self.current
        self.current = None
        if done is None or not done.keep_alive or self.closing:
            if self.transport is not None:
                self.transport.close()
            return
        if self.waiting:
            self.current = self.waiting.popleft()
            self.proxy.dispatch(self.current)
        if not self.waiting:
            self.resume("pipelined")

    def _write_plain(self, status: int, reason: str, body: bytes, head_only: bool, close: bool) -> None:
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nDate: {formatdate(usegmt=True)}\r\n"
                + ("Connection: close\r\n" if close else "") + "\r\n").encode("latin-1")
        self.write(head if head_only else head + body)
        if close and self.transport is not None:
            self.transport.close()
