"""`RawProxy`: the raw engine's request path. It decides shadowing for each request,
sends it upstream on a pooled connection (or opens one), frames the answer back, hands
the shadow copy over, and answers 502/504 itself when the upstream fails."""
from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy
from yarl import URL

from shadow.config import DEFAULT_LIMITS, RequestLimits
from shadow.proxy.forwarding import (
    NO_SHADOW_METHODS,
    RequestCounter,
    body_copy,
    body_timeout_text,
    captured_read,
    timeout_text,
    unreachable_text,
)
from shadow.proxy.limits import ConnectionSlots, origin_form
from shadow.proxy.raw.exchange import (
    Attempt,
    BodyMode,
    ClientSide,
    Exchange,
    request_head,
    request_path,
    response_head,
)
from shadow.proxy.raw.upstream import UpstreamConnection, UpstreamPool
from shadow.proxy.recording import Recorder
from shadow.publish.metrics import Metrics
from shadow.shadowside import ShadowSide

if TYPE_CHECKING:
    from shadow.rules.load import RuleSet

log = logging.getLogger("shadow.proxy.raw")

#: replayed once on a fresh connection when a pooled one turns out closed (never with a body)
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
NO_SHADOW_BYTES = frozenset(method.encode() for method in NO_SHADOW_METHODS)
#: the query of a target without one (parsing a URL per shadowed read costs more than the rest)
NO_QUERY: MultiDictProxy[str] = MultiDictProxy(MultiDict())


class RawProxy:
    """The raw engine: the same constructor and surface as shadow.proxy.aiohttp_engine.Proxy (open,
    close, in_flight) plus the connection bookkeeping its server needs."""

    def __init__(self, upstream: str, rules: Callable[[], RuleSet | None], handoff: ShadowSide | None, metrics: Metrics,
                 max_body_bytes: int = 1048576, upstream_timeout: float = 30.0,
                 limits: RequestLimits = DEFAULT_LIMITS, recorder: Recorder | None = None) -> None:
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
        self.limits = limits
        self.slots = ConnectionSlots(limits.connection_cap())
        self.connections: set[ClientSide] = set()
        self.pool = UpstreamPool()
        self._count = RequestCounter(metrics)
        #: --record: a sample of answers for `rules draft` (None: off, nothing copied)
        self.recorder = recorder
        self._idle_waiter: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # open() sets it

    async def open(self) -> None:
        self.loop = self.pool.loop = asyncio.get_running_loop()

    async def close(self) -> None:
        self.pool.close()

    # ------------------------------------------------------------------ requests

    def dispatch(self, exchange: Exchange) -> None:
        """A request's head is complete: decide shadowing, then send it upstream on a
        pooled connection (or open one)."""
        if exchange.queued:  # the first time: it is in flight from now on
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
                    exchange.match = rules.match(exchange.method.decode("latin-1"), request_path(exchange.target))
        exchange.asked = time.perf_counter()
        connection = self.pool.take()
        if connection is not None:
            exchange.sent(Attempt.POOLED)
            connection.attach(exchange, self._request_head(exchange))
        else:
            exchange.sent(Attempt.FRESH)
            exchange.task = self.loop.create_task(self._connect(exchange))

    def _request_head(self, exchange: Exchange) -> bytes:
        return request_head(exchange, self._base_path, self._host_header, self.limits.forwarded_headers)

    async def _connect(self, exchange: Exchange) -> None:
        try:
            _, connection = await asyncio.wait_for(
                self.loop.create_connection(lambda: UpstreamConnection(self, self.pool), self.host, self.port,
                                            ssl=self._tls),
                self.upstream_timeout)
        except TimeoutError:
            self._own_answer(exchange, 504, "Gateway Timeout", timeout_text(self.upstream, self.upstream_timeout))
            return
        except OSError as problem:
            log.debug("upstream unreachable: %r", problem)
            self._own_answer(exchange, 502, "Bad Gateway", unreachable_text(self.upstream, problem))
            return
        if exchange.client.transport is None:  # the client left meanwhile
            self.pool.release(connection, reusable=True)
            return
        self.pool.hold(connection)
        connection.attach(exchange, self._request_head(exchange))

    # ------------------------------------------------------------------ answers

    def answer_head(self, exchange: Exchange, status: int, reason: bytes, upstream_keep_alive: bool) -> None:
        """The upstream's response head is complete: frame it for the client and write it."""
        answered = time.perf_counter()
        self.metrics.upstream_seconds.observe(answered - exchange.asked)
        exchange.status = status
        head, length = response_head(exchange, status, reason)
        exchange.upstream_keep_alive = upstream_keep_alive
        exchange.copy = body_copy(self.handoff, exchange.match, status, length,
                                  self.max_body_bytes) if exchange.match is not None else None
        if self.recorder is not None:
            exchange.record = self._begin_record(self.recorder, exchange, status, length)
        exchange.client.queue(head)
        exchange.head_written()
        exchange.own = (exchange.asked - exchange.started) + (time.perf_counter() - answered)
        if exchange.mode is BodyMode.NONE:
            self.answer_done(exchange)

    def answer_done(self, exchange: Exchange) -> None:
        """The upstream's body is complete: the last bytes to the client, the shadow copy
        handed over, the upstream connection back to the pool."""
        finished = time.perf_counter()
        exchange.answered()
        client = exchange.client
        if exchange.mode is BodyMode.CHUNK:
            client.queue(b"0\r\n\r\n")
        client.flush()
        connection = exchange.upstream
        if connection is not None:
            # a new parser per exchange: a HEAD answer's parser waiting for a body is dropped
            connection.release(reusable=exchange.upstream_keep_alive and exchange.request_done
                               and not exchange.close_delimited)
        copy = exchange.copy
        if copy is not None:
            body = copy.body()
            if body is not None:
                self._hand_over(exchange, body)
        if exchange.record is not None and self.recorder is not None:
            self.recorder.offer(exchange.record)
        self.metrics.proxy_seconds.observe(exchange.own + time.perf_counter() - finished)
        self._count(exchange.method.decode("latin-1"), f"{exchange.status // 100}xx")
        self._finished(exchange)

    def _begin_record(self, recorder: Recorder, exchange: Exchange, status: int, length: int | None) -> Any:
        if exchange.method != b"GET" or status != 200 or recorder.full:
            return None
        content_type = content_encoding = b""
        for name, value in exchange.response_headers:
            lowered = name.lower()
            if lowered == b"content-type" and not content_type:
                content_type = value
            elif lowered == b"content-encoding" and not content_encoding:
                content_encoding = value
        return recorder.begin("GET", origin_form(exchange.target).decode("latin-1"), status,
                              content_type.decode("latin-1"), content_encoding.decode("latin-1"), length)

    def _hand_over(self, exchange: Exchange, body: bytes) -> None:
        headers = CIMultiDictProxy(CIMultiDict((name.decode("latin-1"), value.decode("latin-1"))
                                               for name, value in exchange.headers))
        content_type = content_encoding = None  # the first of each, as CIMultiDict.get gives
        for name, value in exchange.response_headers:
            lowered = name.lower()
            if lowered == b"content-type" and content_type is None:
                content_type = value.decode("latin-1")
            elif lowered == b"content-encoding" and content_encoding is None:
                content_encoding = value.decode("latin-1")
        target = origin_form(exchange.target)
        query = URL(target.decode("latin-1"), encoded=True).query if b"?" in target else NO_QUERY
        # a body copy is kept only for a matched read, when there is a shadow side
        assert self.handoff is not None and exchange.match is not None
        self.handoff.offer(captured_read(exchange.match, query, headers, body, content_type or "",
                                         content_encoding or ""))

    def upstream_failed(self, exchange: Exchange, problem: BaseException | None, timed_out: bool, stale: bool) -> None:
        """The upstream connection broke or fell silent while carrying `exchange`."""
        if stale and not exchange.answered_head and not exchange.retried and exchange.method in IDEMPOTENT \
                and not exchange.has_body:
            # a pooled connection the upstream had closed: once more, fresh
            exchange.response_headers = []
            self._retry_fresh(exchange)
            return
        if not exchange.answered_head:
            if timed_out and exchange.has_body and not exchange.request_done \
                    and not exchange.client.paused_by("upstream"):
                # the client stopped sending its body (the upstream was reading it): 408, close
                self._own_answer(exchange, 408, "Request Timeout", body_timeout_text(self.upstream_timeout))
            elif timed_out:
                self._own_answer(exchange, 504, "Gateway Timeout", timeout_text(self.upstream, self.upstream_timeout))
            else:
                self._own_answer(exchange, 502, "Bad Gateway",
                                 unreachable_text(self.upstream, problem or ConnectionError()))
            return
        # Headers are gone already: the only honest thing left is to cut the connection
        # so the client sees a truncated body, not a complete one.
        # the path only: a query string may carry tokens
        log.warning("upstream broke off a %s %s response mid-body: %s", exchange.method.decode("latin-1"),
                    request_path(exchange.target), problem or "timeout")
        client = exchange.client
        client.drop_queued()
        if client.transport is not None:
            client.transport.abort()
        self._finished(exchange)

    def _retry_fresh(self, exchange: Exchange) -> None:
        exchange.sent(Attempt.RETRIED)
        exchange.task = self.loop.create_task(self._connect(exchange))

    def abandon(self, exchange: Exchange) -> None:
        """The client went away: the upstream connection is closed, never pooled."""
        if exchange.task is not None and not exchange.task.done():
            exchange.task.cancel()
        if exchange.upstream is not None:
            exchange.upstream.abandon()
        if not exchange.response_done:
            self._finished(exchange)

    def refused(self, method: bytes, status: int) -> None:
        """A request the proxy refused itself (400/408/414/431/503): counted by its status."""
        self._count(method.decode("latin-1"), str(status))

    def _own_answer(self, exchange: Exchange, status: int, reason: str, text: str) -> None:
        self._count(exchange.method.decode("latin-1"), str(status))
        self.metrics.proxy_seconds.observe(exchange.asked - exchange.started)
        exchange.answered()
        # with the request body still coming, the rest of it would be read as a request: close
        exchange.client.write_plain(status, reason, text.encode(), head_only=exchange.method == b"HEAD",
                                     close=exchange.has_body and not exchange.request_done)
        self._finished(exchange)

    def _finished(self, exchange: Exchange) -> None:
        in_flight = exchange.finish()
        if in_flight is None:  # let go already
            return
        if in_flight:
            self.in_flight -= 1
        if self.in_flight == 0 and self._idle_waiter is not None and not self._idle_waiter.done():
            self._idle_waiter.set_result(None)
        client = exchange.client
        if client.current is exchange and (exchange.request_done or client.transport is None):
            client.next_exchange()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is in flight (or `timeout`); True when none is."""
        if self.in_flight == 0:
            return True
        self._idle_waiter = self.loop.create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._idle_waiter), timeout)
        except TimeoutError:
            return self.in_flight == 0
        return True
