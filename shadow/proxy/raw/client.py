"""The client side of the raw engine: one `ClientConnection` per client connection parses
requests with httptools, holds pipelined ones until their turn, streams request bodies
upstream, and writes the answers back in order."""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from email.utils import formatdate

import httptools

from shadow.proxy.limits import LINGER_SECONDS, Refused, check_head, refusal
from shadow.proxy.raw.exchange import EngineSide, Exchange, RequestBody

log = logging.getLogger("shadow.proxy.raw")

PENDING_LIMIT = 256 * 1024
#: pipelined requests parsed ahead of the one being answered; the client's further bytes
#: stay unparsed (and reading stops) until the pipeline shrinks, so a pipeline of tiny
#: requests costs a bounded amount of memory however much the client sends
PIPELINE_DEPTH = 8
HEAD_END = b"\r\n\r\n"


class ClientConnection(asyncio.Protocol):
    """A client connection: parses requests (pipelined ones wait their turn) and writes
    the answers back in order."""

    def __init__(self, proxy: EngineSide) -> None:
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
        # the request head being read: bytes so far (across reads), headers, and whether
        # it began in the latest read (then its share of that read is unknown: not counted)
        self._head_bytes = 0
        self._head_fresh = False
        self._in_head = False
        self._url_done = False
        self._header_count = 0
        self._header_block = 0
        self._timer: asyncio.TimerHandle | None = None
        self._refusal = b""  # written after the answers before it, then the connection closes
        self.lingering = False  # refused: input is read and dropped until the close
        #: the client's write buffer is full (it does not read its answers): the next
        #: request is not sent upstream until it drains
        self.write_paused = False
        self._stalled: asyncio.TimerHandle | None = None  # cuts a client that stopped reading
        self._unparsed = b""  # bytes past a full pipeline, parsed once it shrinks
        #: a request with Upgrade and a body, between its head and its body (_BodyAfterUpgrade)
        self._upgrade_body: Exchange | None = None
        self.upgraded = False  # that body is complete: nothing more is read

    @property
    def idle(self) -> bool:
        """No request in flight and no head arriving."""
        return self.current is None and self.parsing is None

    # -- transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else ""
        if not self.proxy.slots.admit(self):  # every connection busy: no room
            self.proxy.refused(b"", 503)
            self.transport.write(refusal(503))  # type: ignore[union-attr]
            self.transport.close()  # type: ignore[union-attr]
            return
        self.proxy.connections.add(self)
        self._arm(self.proxy.limits.header_timeout, self._head_timed_out)

    def data_received(self, data: bytes) -> None:
        if self.lingering or self.upgraded:
            return
        if self._unparsed:  # behind bytes still waiting for the pipeline to shrink
            self._unparsed += data
            return
        self._parse(data)

    def _parse(self, data: bytes) -> None:
        """Feeds `data` to the parser a head at a time, stopping once PIPELINE_DEPTH
        requests wait (the rest is kept in `_unparsed`)."""
        start, size = 0, len(data)
        while start < size:
            if len(self.waiting) >= PIPELINE_DEPTH:
                self._unparsed = data[start:]
                self.pause("pipelined")
                return
            end = data.find(HEAD_END, start)
            stop = size if end < 0 else end + 4
            if not self._feed(data if start == 0 and stop == size else data[start:stop]) or self.lingering:
                return
            start = stop

    def _parse_unparsed(self) -> None:
        data, self._unparsed = self._unparsed, b""
        if data and not self.lingering and self.transport is not None:
            self._parse(data)
            if not self._unparsed and not self.waiting:
                self.resume("pipelined")

    def _feed(self, data: bytes) -> bool:
        """One piece to the parser; False once nothing more may be parsed (refused,
        upgrade, unreadable)."""
        limits = self.proxy.limits
        try:
            self.parser.feed_data(data)
            if self._in_head:
                if self._head_fresh:
                    self._head_fresh = False
                else:
                    self._head_bytes += len(data)
                    if self._head_bytes > limits.max_head_bytes:
                        raise Refused(431 if self._url_done else 414, "request head too large")
                    if not self._url_done and self._head_bytes > limits.max_request_line:
                        raise Refused(414, "request line too long")
        except httptools.HttpParserUpgrade as upgrade:
            self.closing = True  # no Upgrade tunnel: answer this request, then close
            exchange = self._upgrade_body
            if exchange is None:
                self.pause("upgrade")
                return False
            # llhttp ends the request at its head and would hand the rest to the new
            # protocol; without a tunnel the body is this request's: it is read by a
            # parser of its own, told the framing the head declared
            self.parser = httptools.HttpRequestParser(_BodyAfterUpgrade(self))
            self.parser.feed_data(b"POST / HTTP/1.1\r\n%b\r\n" % (
                b"Transfer-Encoding: chunked\r\n" if exchange.chunked_request
                else b"Content-Length: %d\r\n" % (exchange.content_length or 0)))
            rest = data[upgrade.args[0]:] if upgrade.args else b""
            return self._feed(rest) if rest else True
        except httptools.HttpParserCallbackError as problem:
            refused = problem.__context__
            if not isinstance(refused, Refused):
                raise
            self._refuse(refused)
            return False
        except Refused as refused:
            self._refuse(refused)
            return False
        except httptools.HttpParserError as problem:
            if self.upgraded:  # bytes after an Upgrade request's body: dropped
                return False
            log.debug("bad request from %s: %s", self.peer, problem)
            broken, self.parsing = self.parsing, None
            if self.current is None:
                self._refuse(Refused(400, str(problem)))
            elif broken is self.current and not broken.answered_head:
                # a request body that cannot be read (bad chunk size): the upstream's
                # connection is cut before it sees the whole request, the client gets a 400
                self.proxy.abandon(broken)
                self.closing = True
                self.proxy.refused(broken.method, 400)
                self.write(refusal(400))
                self.linger()
            elif broken is self.current or broken in self.waiting:  # a request body cut: nothing to answer
                if self.transport is not None:
                    self.transport.close()
            else:  # garbage after a good request: answer that one, refuse this, close
                self._refusal = refusal(400)
                self.closing = True
                self.pause("bad request")
            return False
        return True

    def _refuse(self, refused: Refused) -> None:
        """A request refused before anything of it went upstream: 4xx and close (after the
        answers before it, when pipelined)."""
        log.debug("refused a request from %s: %s", self.peer, refused)
        self.proxy.refused(self.parsing.method if self.parsing is not None else b"", refused.status)
        self.parsing = None
        self._in_head = False
        if self.current is None:
            self.write_plain(refused.status, "", b"", head_only=False, close=True)
        else:
            self._refusal = refusal(refused.status)
            self.closing = True
            self.pause("bad request")

    def linger(self) -> None:
        """Close after a refusal: our side now (FIN after the answer), the connection once
        the client closes its side or after LINGER_SECONDS, its input dropped meanwhile."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.lingering = True
        self._pauses.clear()
        if transport.can_write_eof():
            transport.write_eof()
            transport.resume_reading()
            self._arm(LINGER_SECONDS, self._close_now)
        else:
            transport.close()

    def _write_stalled(self) -> None:
        """The client has read nothing of its answers for --upstream-timeout (nginx:
        send_timeout): cut, so it cannot hold a connection slot (and an upstream
        connection) for ever."""
        self._stalled = None
        log.debug("client %s stopped reading its answers: connection cut", self.peer)
        if self.transport is not None:
            self.transport.abort()

    def _close_now(self) -> None:
        self._timer = None
        if self.transport is not None:
            self.transport.close()

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.proxy.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if self.current is None and self.transport is not None:
            self.proxy.refused(b"", 408)
            self.write_plain(408, "", b"", head_only=False, close=True)

    def _idle_timed_out(self) -> None:
        self._timer = None
        if self.current is None and self.parsing is None and self.transport is not None:
            self.transport.close()

    def evict(self) -> None:
        """Room is needed for a new connection and this one has waited longest for a head."""
        self._disarm()
        if self.transport is not None:
            if self.parsing is not None:
                self.proxy.refused(b"", 408)
                self.write(refusal(408))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None
        self.proxy.slots.release(self)
        self.proxy.connections.discard(self)
        self.transport = None
        for exchange in (self.current, *self.waiting):
            if exchange is not None:
                self.proxy.abandon(exchange)
        self.current = None
        self.waiting.clear()

    def pause_writing(self) -> None:  # the client reads slower than the upstream sends
        self.write_paused = True
        if self._stalled is None:
            self._stalled = self.proxy.loop.call_later(self.proxy.upstream_timeout, self._write_stalled)
        exchange = self.current
        if exchange is not None and exchange.upstream is not None and exchange.upstream.transport is not None:
            exchange.upstream.held = True
            exchange.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None
        exchange = self.current
        if exchange is not None and exchange.queued:  # held until the client read its answers
            self.proxy.dispatch(exchange)
            return
        if exchange is not None and exchange.upstream is not None and exchange.upstream.transport is not None:
            exchange.upstream.held = False
            exchange.upstream.touch()
            exchange.upstream.transport.resume_reading()

    def paused_by(self, reason: str) -> bool:
        """Is reading from this client paused for `reason` (e.g. "upstream": the upstream
        reads the request body slower than it comes)?"""
        return reason in self._pauses

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
        self._in_head = self._head_fresh = True
        self._url_done = False
        self._head_bytes = self._header_count = self._header_block = 0
        if self.current is None:  # (a pipelined head waits its turn: not timed)
            self._arm(self.proxy.limits.header_timeout, self._head_timed_out)

    def on_url(self, url: bytes) -> None:
        exchange = self.parsing
        assert exchange is not None
        exchange.target += url
        if len(exchange.target) > self.proxy.limits.max_request_line:
            raise Refused(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._url_done = True
        limits = self.proxy.limits
        size = len(name) + len(value) + 4
        self._header_count += 1
        self._header_block += size
        if size > limits.max_header_line or self._header_count > limits.max_header_count \
                or self._header_block > limits.max_header_block:
            raise Refused(431, "request headers too large")
        self.parsing.headers.append((name, value))  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        exchange = self.parsing
        assert exchange is not None
        self._in_head = False
        parser = self.parser
        exchange.method = parser.get_method()
        version = parser.get_http_version()
        exchange.content_length = check_head(exchange.method, exchange.target, version, exchange.headers,
                                             self.proxy.limits)
        exchange.http10 = version == "1.0"
        exchange.keep_alive = parser.should_keep_alive() and not self.closing
        if exchange.content_length is None and any(name.lower() == b"transfer-encoding"
                                                   for name, _ in exchange.headers):
            exchange.body = RequestBody.CHUNKED
        elif exchange.content_length:
            exchange.body = RequestBody.LENGTH
        if exchange.has_body and parser.should_upgrade():
            self._upgrade_body = exchange
        if self.current is None:
            self._disarm()
        self.proxy.slots.busy(self)
        if self.current is None:
            self.current = exchange
            self._dispatch(exchange)
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
        if exchange is not None and exchange is self._upgrade_body:
            return  # llhttp's end of an Upgrade request at its head: the body follows
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

    def _dispatch(self, exchange: Exchange) -> None:
        """Send `exchange` upstream now, or once the client has read the answers before
        it: answers it does not read are never fetched ahead (a pipeline of small answers
        cannot pile up in memory)."""
        if self.write_paused:
            self.proxy.metrics.proxy_held.inc()
        else:
            self.proxy.dispatch(exchange)

    # -- answers
    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def queue(self, data: bytes) -> None:
        """Answer bytes parsed from one upstream read: written together by `flush()`."""
        self._out.append(data)

    def flush(self) -> None:
        """One write for what the latest upstream read queued."""
        out = self._out
        if out:
            self._out = []
            self.write(b"".join(out) if len(out) > 1 else out[0])

    def drop_queued(self) -> None:
        """The answer broke off: what is queued is never written."""
        self._out = []

    def next_exchange(self) -> None:
        """The current exchange is over both ways: close, or start the next one."""
        done = self.current
        self.current = None
        if done is None or not done.keep_alive or self.closing:
            if self._refusal and done is not None and done.keep_alive:
                self.write(self._refusal)
                self.linger()
                return
            if self.transport is not None:
                self.transport.close()
            return
        if self.waiting:
            self.current = self.waiting.popleft()
            self._dispatch(self.current)
        if self._unparsed:
            self.proxy.loop.call_soon(self._parse_unparsed)
        elif not self.waiting:
            self.resume("pipelined")
        if self.current is None:
            limits = self.proxy.limits
            self.proxy.slots.waiting(self)
            if self.parsing is not None:  # the next head is on its way
                self._arm(limits.header_timeout, self._head_timed_out)
            else:
                self._arm(limits.keepalive_timeout, self._idle_timed_out)

    def write_plain(self, status: int, reason: str, body: bytes, head_only: bool, close: bool) -> None:
        if not reason:  # the proxy's own refusal of a request
            self.write(refusal(status, head_only))
            self.linger()
            return
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nDate: {formatdate(usegmt=True)}\r\n"
                + ("Connection: close\r\n" if close else "") + "\r\n").encode("latin-1")
        self.write(head if head_only else head + body)
        if close and self.transport is not None:
            self.transport.close()


class _BodyAfterUpgrade:
    """Parser callbacks for the body of a request with `Upgrade` (no tunnel is made, so
    it is an ordinary request body): passed to the client connection as its body, after
    which the connection reads no more (it closes after the answer)."""

    def __init__(self, client: ClientConnection) -> None:
        self.client = client

    def on_body(self, body: bytes) -> None:
        self.client.on_body(body)

    def on_message_complete(self) -> None:
        client = self.client
        if client.upgraded:
            return
        client._upgrade_body = None
        client.on_message_complete()
        client.upgraded = True
        client.pause("upgrade")
