"""The reverse proxy: the only thing on the client's path.

Every request goes to the upstream unchanged (minus hop-by-hop headers, plus
X-Forwarded-*), and the upstream's answer comes back unchanged: status, reason,
end-to-end headers and the body bytes as sent (no decompression, streamed both ways).
The handler does no I/O but the upstream call. For a read a rule matches it only keeps
a copy of a 2xx body up to `max_body_bytes` and, after the client has its last byte,
hands it to the shadow side without waiting (`Handoff.offer`: to the shadow worker
process; or `Pipeline.offer` in-process with --shadow-process inline); parsing, keys
and comparing happen there. Upstream down → 502, upstream silent for `upstream_timeout` → 504, each with a
one-line text body.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDict
from yarl import URL

from shadow.metrics import Metrics
from shadow.model import SkipReason
from shadow.capture import CapturedRead

log = logging.getLogger("shadow.proxy")

#: RFC 9110 §7.6.1 hop-by-hop fields (plus the headers `Connection` names, and Proxy-*)
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"})
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: methods whose reads can be shadowed (a HEAD has no body to compare)
NO_SHADOW_METHODS = frozenset({"HEAD", "OPTIONS", "CONNECT", "TRACE"})
TRACE_HEADERS = ("traceparent", "tracestate")


def _hop_by_hop(headers: Any) -> frozenset[str]:
    named = set(HOP_BY_HOP)
    for value in headers.getall(hdrs.CONNECTION, ()):
        named.update(token.strip().lower() for token in value.split(",") if token.strip())
    return frozenset(named)


def end_to_end(headers: Any, also_drop: frozenset[str] = frozenset()) -> CIMultiDict[str]:
    """The headers a proxy forwards: all but hop-by-hop, Proxy-* and `also_drop`;
    repeated headers (Set-Cookie) kept in order."""
    drop = _hop_by_hop(headers) | also_drop
    forwarded: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in drop or lowered.startswith("proxy-"):
            continue
        forwarded.add(name, value)
    return forwarded


class PassThroughResponse(web.StreamResponse):
    """A StreamResponse that adds no Content-Type the upstream did not send (aiohttp
    defaults one for non-empty bodies). Server and Date come from the upstream."""

    _keep_no_content_type = False
    #: headers go out in the same write as the first body chunk (one syscall less)
    _send_headers_immediately = False

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        if self._keep_no_content_type:
            self._headers.popall(hdrs.CONTENT_TYPE, None)


class Proxy:
    """The proxy's request handler and its upstream connection pool. `handoff` takes the
    captured reads (`sink`, `admit(match)`, `offer(read)`: a Handoff or a Pipeline), or
    None: proxy only."""

    def __init__(self, upstream: str, rules: Callable[[], Any], handoff: Any, metrics: Metrics,
                 max_body_bytes: int = 1048576, upstream_timeout: float = 30.0) -> None:
        self.upstream = URL(upstream)
        self._base = upstream.rstrip("/")
        self._rules = rules
        self.handoff = handoff
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.upstream_timeout = upstream_timeout
        self.session: aiohttp.ClientSession | None = None
        self.in_flight = 0
        self._counted: dict[tuple[str, str], Any] = {}

    def _count(self, method: str, code: str) -> None:
        label = method if method in KNOWN_METHODS else "other"  # methods are client input: bounded
        child = self._counted.get((label, code))
        if child is None:
            child = self._counted[(label, code)] = self.metrics.proxy_requests.labels(label, code)
        child.inc()

    async def open(self) -> None:
        # Idle upstream connections are closed after 4 s: below Node.js' default
        # keepAliveTimeout (5 s), so we close idle ones before the upstream does.
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=4.0, ttl_dns_cache=60)
        self.session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.upstream_timeout, sock_read=self.upstream_timeout),
            skip_auto_headers=(hdrs.ACCEPT, hdrs.ACCEPT_ENCODING, hdrs.USER_AGENT, hdrs.CONTENT_TYPE),
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    # ------------------------------------------------------------------ the handler

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        self.in_flight += 1
        try:
            return await self._forward(request, started)
        finally:
            self.in_flight -= 1

    async def _forward(self, request: web.BaseRequest, started: float) -> web.StreamResponse:
        assert self.session is not None, "Proxy.open() first"
        method = request.method
        match = None
        if method not in NO_SHADOW_METHODS and self.handoff is not None:
            rules = self._rules()
            if rules is not None:
                match = rules.match(method, request.path)
        headers = end_to_end(request.headers, frozenset({"host", "expect"}))
        self._add_forwarded(request, headers)
        if request.version >= aiohttp.HttpVersion11 and request.headers.get(hdrs.EXPECT, "").lower() == "100-continue":
            # The client waits for this before sending its body; the upstream gets the body
            # as it arrives (answering for the upstream is what aiohttp's own handler does).
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = request.content if request.body_exists else None
        url = URL(self._base + request.raw_path, encoded=True)
        asked = time.perf_counter()
        try:
            # aiohttp itself resends an idempotent request once on a fresh connection when
            # a pooled keep-alive connection turns out to be closed (never a used-up body).
            upstream = await self.session.request(method, url, headers=headers, data=body, allow_redirects=False,
                                                  compress=None, chunked=None)
        except (asyncio.TimeoutError, TimeoutError):
            return self._own_answer(method, 504, f"504 Gateway Timeout: upstream {self.upstream} did not answer within {self.upstream_timeout:g}s\n", started, asked)
        except aiohttp.ClientError as problem:
            log.debug("upstream unreachable: %r", problem)
            return self._own_answer(method, 502, f"502 Bad Gateway: upstream {self.upstream} unreachable ({type(problem).__name__})\n", started, asked)
        answered = time.perf_counter()
        self.metrics.upstream_seconds.observe(answered - asked)
        fully_read = False
        try:
            response = PassThroughResponse(status=upstream.status, reason=upstream.reason,
                                           headers=end_to_end(upstream.headers))
            response._keep_no_content_type = hdrs.CONTENT_TYPE not in upstream.headers
            copy = self._copy_for_shadow(match, upstream)
            await response.prepare(request)
            prepared = time.perf_counter()
            own = (asked - started) + (prepared - answered)
            copy = await self._stream_body(request, upstream, response, copy, match)
            fully_read = True
            streamed = time.perf_counter()
            await response.write_eof()
            if copy is not None:
                self._hand_over(request, upstream, match, b"".join(copy))  # one chunk: no copy at all
            own += time.perf_counter() - streamed
            self.metrics.proxy_seconds.observe(own)
            self._count(method, f"{upstream.status // 100}xx")
            return response
        finally:
            if fully_read:
                upstream.release()
            else:  # client went away or upstream broke mid-body: do not reuse the connection
                upstream.close()

    def _copy_for_shadow(self, match: Any, upstream: aiohttp.ClientResponse) -> list[bytes] | None:
        """Decide, from the headers only, whether to keep a copy of this body."""
        if match is None or self.handoff is None:
            return None
        route = match.route
        if not 200 <= upstream.status < 300:
            self.handoff.sink.skipped(route.entity, route.name, SkipReason.NON_2XX)
            return None
        length = upstream.content_length
        if length is not None and length > self.max_body_bytes:
            self.handoff.sink.skipped(route.entity, route.name, SkipReason.BODY_TOO_LARGE)
            return None
        return [] if self.handoff.admit(match) else None

    async def _stream_body(self, request: web.BaseRequest, upstream: aiohttp.ClientResponse,
                           response: web.StreamResponse, copy: list[bytes] | None, match: Any) -> list[bytes] | None:
        """Send the body on as it arrives; the chunks of the shadow copy, or None."""
        copied = 0
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
                if copy is not None:
                    copied += len(chunk)
                    if copied > self.max_body_bytes:  # chunked: the size shows only now
                        copy = None
                        route = match.route
                        self.handoff.sink.skipped(route.entity, route.name, SkipReason.BODY_TOO_LARGE)  # type: ignore[union-attr]
                    else:
                        copy.append(chunk)
        except (aiohttp.ClientPayloadError, aiohttp.ServerTimeoutError, aiohttp.ClientOSError, asyncio.TimeoutError) as problem:
            # Headers are gone already: the only honest thing left is to cut the
            # connection so the client sees a truncated body, not a complete one.
            log.warning("upstream broke off a %s %s response mid-body: %s", request.method, request.path, problem)
            if request.transport is not None:
                request.transport.abort()
            raise
        return copy

    def _hand_over(self, request: web.BaseRequest, upstream: aiohttp.ClientResponse, match: Any, body: bytes) -> None:
        """After the client has the whole answer: queue the read for the shadow side."""
        trace = tuple((name, request.headers[name]) for name in TRACE_HEADERS if name in request.headers)
        self.handoff.offer(CapturedRead(  # type: ignore[union-attr]
            match=match, query=request.query, headers=request.headers, body=body,
            content_type=upstream.headers.get(hdrs.CONTENT_TYPE, ""),
            content_encoding=upstream.headers.get(hdrs.CONTENT_ENCODING, ""),
            trace_headers=trace, enqueued_at=time.monotonic(),
        ))

    def _add_forwarded(self, request: web.BaseRequest, headers: CIMultiDict[str]) -> None:
        peer = request.remote or ""
        previous = headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{previous}, {peer}" if previous else peer
        headers.setdefault("X-Forwarded-Proto", request.scheme)
        host = request.headers.get(hdrs.HOST)
        if host is not None:
            headers.setdefault("X-Forwarded-Host", host)

    def _own_answer(self, method: str, status: int, text: str, started: float, asked: float) -> web.Response:
        self._count(method, str(status))
        self.metrics.proxy_seconds.observe(asked - started)
        return web.Response(status=status, text=text, headers={hdrs.CACHE_CONTROL: "no-store"})


async def serve(proxy: Proxy, host: str, port: int, drain_timeout: float) -> tuple[web.ServerRunner, int]:
    """Listen; returns the runner (cleanup() drains in-flight requests) and the port."""
    server = web.Server(proxy.handle, handler_cancellation=True, access_log=None)
    runner = web.ServerRunner(server, shutdown_timeout=drain_timeout)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, bound
