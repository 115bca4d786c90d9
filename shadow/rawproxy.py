"""The raw reverse proxy engine (`--engine raw`): the same contract as shadow/proxy.py,
built on asyncio Protocols and httptools (llhttp) instead of aiohttp's client and server.

One `ClientConnection` per client connection parses requests; each request becomes an
`Exchange` that is written to a pooled keep-alive `UpstreamConnection` (per-upstream
pool, LIFO, idle ones closed after 4 s). Both directions are streamed as they arrive,
with flow control: a full write buffer on one side pauses reading on the other. The
response goes back with the upstream's status line reason and end-to-end headers as
received (names and values byte for byte, repeats in order); the body bytes are
written on unchanged for a Content-Length body, re-framed as chunks (same bytes
inside) for a chunked or close-delimited body to an HTTP/1.1 client, and sent
close-delimited to an HTTP/1.0 client. Shadow capture, own 502/504 answers and the
metrics are the shared helpers of shadow/proxy.py.

Runs on the request path: no awaits per request when a pooled connection is free (a
task only to open a new upstream connection); per request a handful of list appends
and one write per upstream read.

Not done: Upgrade / CONNECT (the Upgrade header is hop-by-hop, so the upstream sees a
plain request; the client connection is closed after the answer), trailers of a
chunked body (dropped). An https upstream works (TLS via the loop) but is not tested.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from shadow.metrics import Metrics
from shadow.proxy import (NO_SHADOW_METHODS, RequestCounter, body_copy, captured_read, connection_named,
                          forwardable, forwarded_for, timeout_text, unreachable_text)

log = logging.getLogger("shadow.rawproxy")

#: replayed once on a fresh connection when a pooled one turns out closed (never with a body)
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
#: idle upstream connections are closed after this: below Node.js' keepAliveTimeout (5 s)
IDLE_SECONDS = 4.0
REQUEST_DROP = frozenset({"host", "expect"})
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
PENDING_LIMIT = 256 * 1024


class Exchange:
    """One request and its answer: what the client sent, where it is going, and how the
    answer is framed back. Driven by the callbacks of both connections."""

    __slots__ = ("client", "method", "target", "headers", "http10", "keep_alive", "chunked_request",
                 "has_body", "request_done", "body_pending", "upstream", "reused", "answered_head",
                 "response_done", "mode", "copy", "match", "status", "response_headers", "started",
                 "asked", "own", "task", "close_delimited", "retried", "dispatched", "finished",
                 "upstream_keep_alive")

    def __init__(self, client: "ClientConnection") -> None:
        self.client = client
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.request_done = False
        self.body_pending: list[bytes] = []
        self.upstream: UpstreamConnection | None = None
        self.reused = False
        self.answered_head = False
        self.response_done = False
        self.mode = ""
        self.copy: Any = None
        self.match: Any = None
        self.status = 0
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.own = 0.0
        self.task: asyncio.Task[None] | None = None
        self.close_delimited = False
        self.retried = False
        self.dispatched = False
        self.finished = False
        self.upstream_keep_alive = False


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


class UpstreamConnection(asyncio.Protocol):
    """A keep-alive connection to the upstream, carrying one exchange at a time."""

    def __init__(self, proxy: "RawProxy") -> None:
        self.proxy = proxy
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
        client = exchange.client
        if client._out:
            out = client._out
            client._out = []
            client.write(b"".join(out) if len(out) > 1 else out[0])

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.proxy.pool_forget(self)
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
        if exchange.mode == "chunk":
            client._out.append(b"%x\r\n%b\r\n" % (len(body), body))
        else:
            client._out.append(body)
        if exchange.copy is not None:
            exchange.copy.add(body)

    def on_message_complete(self) -> None:
        if self._skip_interim:
            self._skip_interim = False
            return
        exchange = self.exchange
        if exchange is None or not exchange.answered_head or exchange.response_done:
            return
        self.proxy.answer_done(exchange)


class RawProxy:
    """The raw engine: the same constructor and surface as shadow.proxy.Proxy (open,
    close, in_flight) plus the connection bookkeeping its server needs."""

    def __init__(self, upstream: str, rules: Callable[[], Any], handoff: Any, metrics: Metrics,
                 max_body_bytes: int = 1048576, upstream_timeout: float = 30.0) -> None:
        parts = urlsplit(upstream)
        self.upstream = URL(upstream)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        #: https upstreams: verified against the system's CAs, as aiohttp's client does
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        self._host_header = parts.netloc.encode("latin-1")
        self._base_path = parts.path.rstrip("/").encode("latin-1")
        self._rules = rules
        self.handoff = handoff
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.upstream_timeout = upstream_timeout
        self.in_flight = 0
        self.connections: set[ClientConnection] = set()
        self._idle: list[UpstreamConnection] = []
        self._busy: set[UpstreamConnection] = set()
        self._count = RequestCounter(metrics)
        self._sweeper: asyncio.TimerHandle | None = None
        self._idle_waiter: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # open() sets it

    async def open(self) -> None:
        self.loop = asyncio.get_running_loop()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for connection in [*self._idle, *self._busy]:
            if connection.transport is not None:
                connection.transport.abort()
        self._idle.clear()
        self._busy.clear()

    # ------------------------------------------------------------------ requests

    def dispatch(self, exchange: Exchange) -> None:
        """A request's head is complete: decide shadowing, then send it upstream on a
        pooled connection (or open one)."""
        if not exchange.dispatched:
            exchange.dispatched = True
            self.in_flight += 1
            client = exchange.client
            if client.transport is not None and not exchange.http10:
                for name, value in exchange.headers:
                    if name.lower() == b"expect" and value.strip().lower() == b"100-continue":
                        client.write(CONTINUE)  # the client waits for this before its body
                        break
            if exchange.method not in NO_SHADOW_BYTES and self.handoff is not None:
                rules = self._rules()
                if rules is not None:
                    exchange.match = rules.match(exchange.method.decode("latin-1"), _path(exchange.target))
        exchange.asked = time.perf_counter()
        connection = self._pooled()
        if connection is not None:
            exchange.reused = True
            self._busy.add(connection)
            connection.attach(exchange, self._request_head(exchange))
        else:
            exchange.reused = False
            exchange.task = self.loop.create_task(self._connect(exchange))

    async def _connect(self, exchange: Exchange) -> None:
        try:
            _, connection = await asyncio.wait_for(
                self.loop.create_connection(lambda: UpstreamConnection(self), self.host, self.port, ssl=self._tls),
                self.upstream_timeout)
        except (asyncio.TimeoutError, TimeoutError):
            self._own_answer(exchange, 504, "Gateway Timeout", timeout_text(self.upstream, self.upstream_timeout))
            return
        except OSError as problem:
            log.debug("upstream unreachable: %r", problem)
            self._own_answer(exchange, 502, "Bad Gateway", unreachable_text(self.upstream, problem))
            return
        if exchange.client.transport is None:  # the client left meanwhile
            self._release(connection, reusable=True)
            return
        self._busy.add(connection)
        connection.attach(exchange, self._request_head(exchange))

    def _request_head(self, exchange: Exchange) -> bytes:
        headers = exchange.headers
        drop = connection_named(value.decode("latin-1") for name, value in headers if name.lower() == b"connection")
        drop = drop | REQUEST_DROP
        lines = [b"%b %b%b HTTP/1.1\r\nHost: %b\r\n" % (exchange.method, self._base_path,
                                                       _origin_form(exchange.target), self._host_header)]
        previous_for: bytes | None = None
        proto = host = forwarded_host = None
        for name, value in headers:
            lowered = name.decode("latin-1").lower()
            if lowered == "x-forwarded-for":
                if previous_for is None:
                    previous_for = value
                continue
            if lowered == "host":
                host = value
            elif lowered == "x-forwarded-proto":
                proto = value
            elif lowered == "x-forwarded-host":
                forwarded_host = value
            if forwardable(lowered, drop):
                lines.append(b"%b: %b\r\n" % (name, value))
        if exchange.chunked_request:
            lines.append(b"Transfer-Encoding: chunked\r\n")
        peer = exchange.client.peer
        lines.append(b"X-Forwarded-For: %b\r\n" % forwarded_for(
            previous_for.decode("latin-1") if previous_for else None, peer).encode("latin-1"))
        if proto is None:
            lines.append(b"X-Forwarded-Proto: http\r\n")
        if host is not None and forwarded_host is None:
            lines.append(b"X-Forwarded-Host: %b\r\n" % host)
        lines.append(b"\r\n")
        return b"".join(lines)

    # ------------------------------------------------------------------ answers

    def answer_head(self, exchange: Exchange, status: int, reason: bytes, upstream_keep_alive: bool) -> None:
        """The upstream's response head is complete: frame it for the client and write it."""
        answered = time.perf_counter()
        self.metrics.upstream_seconds.observe(answered - exchange.asked)
        exchange.status = status
        headers = exchange.response_headers
        drop = connection_named(value.decode("latin-1") for name, value in headers if name.lower() == b"connection")
        chunked = False
        length: int | None = None
        lines = [b"HTTP/1.1 %d %b\r\n" % (status, reason)]
        for name, value in headers:
            lowered = name.decode("latin-1").lower()
            if lowered == "transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif lowered == "content-length":
                with contextlib.suppress(ValueError):
                    length = int(value)
            if forwardable(lowered, drop):
                lines.append(b"%b: %b\r\n" % (name, value))
        no_body = exchange.method == b"HEAD" or status in (204, 304)
        if no_body:
            exchange.mode = "none"
        elif chunked or length is None:
            exchange.close_delimited = not chunked
            exchange.mode = "close" if exchange.http10 else "chunk"
        else:
            exchange.mode = "length"
        if exchange.mode == "chunk":
            lines.append(b"Transfer-Encoding: chunked\r\n")
        elif exchange.mode == "close":
            exchange.keep_alive = False
        if not exchange.keep_alive:
            lines.append(b"Connection: close\r\n")
        elif exchange.http10:
            lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"\r\n")
        exchange.upstream_keep_alive = upstream_keep_alive
        exchange.copy = body_copy(self.handoff, exchange.match, status, length if not chunked else None,
                                  self.max_body_bytes) if exchange.match is not None else None
        exchange.client._out.append(b"".join(lines))
        exchange.answered_head = True
        exchange.own = (exchange.asked - exchange.started) + (time.perf_counter() - answered)
        if no_body:
            self.answer_done(exchange)

    def answer_done(self, exchange: Exchange) -> None:
        """The upstream's body is complete: the last bytes to the client, the shadow copy
        handed over, the upstream connection back to the pool."""
        finished = time.perf_counter()
        exchange.response_done = True
        client = exchange.client
        if exchange.mode == "chunk":
            client._out.append(b"0\r\n\r\n")
        if client._out:
            out = client._out
            client._out = []
            client.write(b"".join(out))
        connection = exchange.upstream
        if connection is not None:
            connection.detach()
            # a new parser per exchange: a HEAD answer's parser waiting for a body is dropped
            self._release(connection, reusable=exchange.upstream_keep_alive and exchange.request_done
                          and not exchange.close_delimited)
        copy = exchange.copy
        if copy is not None:
            body = copy.body()
            if body is not None:
                self._hand_over(exchange, body)
        self.metrics.proxy_seconds.observe(exchange.own + time.perf_counter() - finished)
        self._count(exchange.method.decode("latin-1"), f"{exchange.status // 100}xx")
        self._finished(exchange)

    def _hand_over(self, exchange: Exchange, body: bytes) -> None:
        headers = CIMultiDictProxy(CIMultiDict((name.decode("latin-1"), value.decode("latin-1"))
                                               for name, value in exchange.headers))
        response = CIMultiDict((name.decode("latin-1"), value.decode("latin-1"))
                               for name, value in exchange.response_headers)
        query = URL(_origin_form(exchange.target).decode("latin-1"), encoded=True).query
        self.handoff.offer(captured_read(exchange.match, query, headers, body, response.get("Content-Type", ""),
                                         response.get("Content-Encoding", "")))

    def upstream_failed(self, exchange: Exchange, problem: BaseException | None, timed_out: bool, stale: bool) -> None:
        """The upstream connection broke or fell silent while carrying `exchange`."""
        if stale and not exchange.answered_head and not exchange.retried and exchange.method in IDEMPOTENT \
                and not exchange.has_body:
            exchange.retried = True  # a pooled connection the upstream had closed: once more, fresh
            exchange.task = None
            exchange.response_headers = []
            self._retry_fresh(exchange)
            return
        if not exchange.answered_head:
            if timed_out:
                self._own_answer(exchange, 504, "Gateway Timeout", timeout_text(self.upstream, self.upstream_timeout))
            else:
                self._own_answer(exchange, 502, "Bad Gateway", unreachable_text(self.upstream, problem or ConnectionError()))
            return
        # Headers are gone already: the only honest thing left is to cut the connection
        # so the client sees a truncated body, not a complete one.
        log.warning("upstream broke off a %s %s response mid-body: %s", exchange.method.decode("latin-1"),
                    exchange.target.decode("latin-1"), problem or "timeout")
        client = exchange.client
        client._out = []
        if client.transport is not None:
            client.transport.abort()
        self._finished(exchange)

    def _retry_fresh(self, exchange: Exchange) -> None:
        exchange.reused = False
        exchange.task = self.loop.create_task(self._connect(exchange))

    def abandon(self, exchange: Exchange) -> None:
        """The client went away: the upstream connection is closed, never pooled."""
        if exchange.task is not None and not exchange.task.done():
            exchange.task.cancel()
        connection = exchange.upstream
        if connection is not None:
            connection.detach()
            self._busy.discard(connection)
            if connection.transport is not None:
                connection.transport.abort()
        if not exchange.response_done:
            exchange.response_done = True
            self._finished(exchange)

    def _own_answer(self, exchange: Exchange, status: int, reason: str, text: str) -> None:
        self._count(exchange.method.decode("latin-1"), str(status))
        self.metrics.proxy_seconds.observe(exchange.asked - exchange.started)
        exchange.response_done = True
        exchange.answered_head = True
        # with the request body still coming, the rest of it would be read as a request: close
        exchange.client._write_plain(status, reason, text.encode(), head_only=exchange.method == b"HEAD",
                                     close=exchange.has_body and not exchange.request_done)
        self._finished(exchange)

    def _finished(self, exchange: Exchange) -> None:
        if exchange.finished:
            return
        exchange.finished = True
        if exchange.dispatched:
            self.in_flight -= 1
        if self.in_flight == 0 and self._idle_waiter is not None and not self._idle_waiter.done():
            self._idle_waiter.set_result(None)
        client = exchange.client
        if client.current is exchange and (exchange.request_done or client.transport is None):
            client.next_exchange()

    # ------------------------------------------------------------------ the pool

    def _pooled(self) -> UpstreamConnection | None:
        idle = self._idle
        now = self.loop.time()
        while idle:
            connection = idle.pop()
            if connection.transport is not None and not connection.transport.is_closing() \
                    and now - connection.idle_since < IDLE_SECONDS:
                return connection
            if connection.transport is not None:
                connection.transport.close()
        return None

    def _release(self, connection: UpstreamConnection, reusable: bool) -> None:
        self._busy.discard(connection)
        if not reusable or connection.transport is None or connection.transport.is_closing():
            if connection.transport is not None:
                connection.transport.close()
            return
        connection.idle_since = self.loop.time()
        self._idle.append(connection)
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(IDLE_SECONDS, self._sweep)

    def pool_forget(self, connection: UpstreamConnection) -> None:
        self._busy.discard(connection)
        with contextlib.suppress(ValueError):
            self._idle.remove(connection)

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

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight (or `timeout`); True when none is."""
        if self.in_flight == 0:
            return True
        self._idle_waiter = self.loop.create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._idle_waiter), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return self.in_flight == 0
        return True


NO_SHADOW_BYTES = frozenset(method.encode() for method in NO_SHADOW_METHODS)


def _origin_form(target: bytes) -> bytes:
    """The path and query of a request target (an absolute-form target loses scheme and host)."""
    if target.startswith(b"/"):
        return target
    if target == b"*":
        return target
    if b"://" in target:
        rest = target.split(b"://", 1)[1]
        slash = rest.find(b"/")
        return rest[slash:] if slash >= 0 else b"/"
    return b"/" + target


def _path(target: bytes) -> str:
    """The decoded path rules match against (aiohttp's request.path)."""
    return URL(_origin_form(target).decode("latin-1"), encoded=True).path


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
            if connection.current is None and connection.parsing is None and connection.transport is not None:
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
