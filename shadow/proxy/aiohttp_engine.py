"""The aiohttp engine (`--engine aiohttp`, the fallback) of the reverse proxy: the only
thing on the client's path. Its listener and request-head limits are
shadow/proxy/aiohttp_guard.py; what it shares with the raw engine, shadow/proxy/forwarding.py.

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
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDict
from yarl import URL

from shadow.config import DEFAULT_LIMITS, RequestLimits
from shadow.proxy.aiohttp_guard import complete
from shadow.proxy.aiohttp_upstream import StrictConnector
from shadow.proxy.forwarding import (
    NO_SHADOW_METHODS,
    BodyCopy,
    BodyStalled,
    RequestCounter,
    bad_answer_text,
    body_copy,
    body_timeout_text,
    captured_read,
    end_to_end,
    forwarded_for,
    timeout_text,
    unreachable_text,
)
from shadow.proxy.limits import (
    ConnectionSlots,
    Refused,
    check_head,
    origin_form,
    refusal,
)
from shadow.proxy.recording import RecordCopy, Recorder
from shadow.publish.metrics import Metrics
from shadow.shadowside import ShadowSide

if TYPE_CHECKING:
    from shadow.rules.load import RuleSet
    from shadow.rules.spec import RouteMatch

log = logging.getLogger("shadow.proxy.aiohttp_engine")


class PassThroughResponse(web.StreamResponse):
    """A StreamResponse that adds no Content-Type, Server or Date the upstream did not
    send (aiohttp adds all three)."""

    _keep_no_content_type = False
    _keep_no_server = False
    _keep_no_date = False
    #: headers go out in the same write as the first body chunk (one syscall less)
    _send_headers_immediately = False

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        if self._keep_no_content_type:
            self._headers.popall(hdrs.CONTENT_TYPE, None)
        if self._keep_no_server:
            self._headers.popall(hdrs.SERVER, None)
        if self._keep_no_date:
            self._headers.popall(hdrs.DATE, None)


class Proxy:
    """The proxy's request handler and its upstream connection pool. `handoff` takes the
    captured reads (`sink`, `admit(match)`, `offer(read)`: a Handoff or a Pipeline), or
    None: proxy only."""

    def __init__(self, upstream: str, rules: Callable[[], RuleSet | None], handoff: ShadowSide | None, metrics: Metrics,
                 max_body_bytes: int = 1048576, upstream_timeout: float = 30.0,
                 limits: RequestLimits = DEFAULT_LIMITS, recorder: Recorder | None = None) -> None:
        self.upstream = URL(upstream)
        self._base = upstream.rstrip("/")
        self._rules = rules
        self.handoff = handoff
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.upstream_timeout = upstream_timeout
        self.send_timeout = upstream_timeout  # a client reading nothing of its answers (aiohttp_guard)
        self.session: aiohttp.ClientSession | None = None
        self.in_flight = 0
        self.limits = limits
        self.slots = ConnectionSlots(limits.connection_cap())
        #: aiohttp's handler of each client connection -> its guard (shadow.proxy.aiohttp_guard)
        self.guards: dict[Any, Any] = {}
        self._count = RequestCounter(metrics)
        #: --record: a sample of answers for `rules draft` (None: off, nothing copied)
        self.recorder = recorder

    async def open(self) -> None:
        # Idle upstream connections are closed after 4 s: below Node.js' default
        # keepAliveTimeout (5 s), so we close idle ones before the upstream does.
        connector = StrictConnector(limit=0, keepalive_timeout=4.0, ttl_dns_cache=60)
        self.session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.upstream_timeout,
                                          sock_read=self.upstream_timeout),
            skip_auto_headers=(hdrs.ACCEPT, hdrs.ACCEPT_ENCODING, hdrs.USER_AGENT, hdrs.CONTENT_TYPE),
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    # ------------------------------------------------------------------ the handler

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        guard = self.guards.get(request.protocol)
        if guard is not None:
            guard.request_started()
        self.in_flight += 1
        try:
            try:
                check_head(request.method.encode("latin-1"), request.raw_path.encode("latin-1"),
                           f"{request.version.major}.{request.version.minor}", list(request.raw_headers), self.limits)
                if request.raw_path == "*":
                    raise Refused(400, "asterisk-form is not proxied by this engine")
                # the guard measures a connection's first head as it arrives; a pipelined
                # one aiohttp parsed meanwhile is measured here (aiohttp has no such limit)
                block = sum(len(name) + len(value) + 4 for name, value in request.raw_headers)
                if block > self.limits.max_header_block:
                    raise Refused(431, "request headers too large")
            except Refused as refused:
                return await complete(request, self._refuse(request, refused))
            if guard is not None and not guard.writable.is_set():
                # The client has not read the answers before this one (a pipeline it never
                # reads): nothing more is fetched for it until it does, so unread answers
                # never pile up in memory, whatever their sizes (aiohttp itself waits only
                # within one answer of more than 64 KiB).
                self.metrics.proxy_held.inc()
                await guard.writable.wait()
            return await complete(request, await self._forward(request, started))
        finally:
            self.in_flight -= 1
            if guard is not None:
                guard.request_finished()

    async def _forward(self, request: web.BaseRequest, started: float) -> web.StreamResponse:
        assert self.session is not None, "Proxy.open() first"
        method = request.method
        match: RouteMatch | None = None
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
        body = self._body(request.content) if request.body_exists else None
        target = origin_form(request.raw_path.encode("latin-1")).decode("latin-1")
        url = URL(self._base + target, encoded=True)
        asked = time.perf_counter()
        try:
            # aiohttp itself resends an idempotent request once on a fresh connection when
            # a pooled keep-alive connection turns out to be closed (never a used-up body).
            upstream = await self.session.request(method, url, headers=headers, data=body, allow_redirects=False,
                                                  compress=None, chunked=None)
        except BodyStalled:
            return self._body_stalled(method, started, asked)
        except TimeoutError:
            return self._own_answer(method, 504, timeout_text(self.upstream, self.upstream_timeout), started, asked)
        except aiohttp.ClientError as problem:
            if isinstance(problem.__cause__, BodyStalled) or isinstance(problem.__context__, BodyStalled):
                return self._body_stalled(method, started, asked)
            log.debug("upstream unreachable: %r", problem)
            return self._own_answer(method, 502, unreachable_text(self.upstream, problem), started, asked)
        if upstream.status < 200:  # a 101 nobody asked for (no tunnel is ever made)
            upstream.close()
            return self._own_answer(method, 502, bad_answer_text(self.upstream, f"a {upstream.status} answer"),
                                    started, asked)
        answered = time.perf_counter()
        self.metrics.upstream_seconds.observe(answered - asked)
        fully_read = False
        try:
            # from the raw headers: names keep the upstream's case (ETag, not Etag)
            received = CIMultiDict((name.decode("latin-1"), value.decode("latin-1"))
                                   for name, value in upstream.raw_headers)
            response = PassThroughResponse(status=upstream.status, reason=upstream.reason,
                                           headers=end_to_end(received))
            response._keep_no_content_type = hdrs.CONTENT_TYPE not in received
            response._keep_no_server = hdrs.SERVER not in received
            response._keep_no_date = hdrs.DATE not in received
            copy = body_copy(self.handoff, match, upstream.status, upstream.content_length, self.max_body_bytes)
            recorder = self.recorder
            record = recorder.begin(method, target, upstream.status, received.get(hdrs.CONTENT_TYPE, ""),
                                    received.get(hdrs.CONTENT_ENCODING, ""),
                                    upstream.content_length) if recorder is not None else None
            guard = self.guards.get(request.protocol)
            if guard is not None:
                guard.answering = True
            await response.prepare(request)
            prepared = time.perf_counter()
            own = (asked - started) + (prepared - answered)
            await self._stream_body(request, upstream, response, copy, record)
            fully_read = True
            streamed = time.perf_counter()
            await response.write_eof()
            copied = copy.body() if copy is not None else None
            if copied is not None:
                self._hand_over(request, upstream, match, copied)
            if record is not None and recorder is not None:
                recorder.offer(record)
            own += time.perf_counter() - streamed
            self.metrics.proxy_seconds.observe(own)
            self._count(method, f"{upstream.status // 100}xx")
            return response
        finally:
            if fully_read:
                upstream.release()
            else:  # client went away or upstream broke mid-body: do not reuse the connection
                upstream.close()

    async def _stream_body(self, request: web.BaseRequest, upstream: aiohttp.ClientResponse,
                           response: web.StreamResponse, copy: BodyCopy | None, record: RecordCopy | None) -> None:
        """Send the body on as it arrives, keeping the shadow copy (and the recorded one)."""
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
                if copy is not None:
                    copy.add(chunk)
                if record is not None:
                    record.add(chunk)
        except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ServerTimeoutError, aiohttp.ClientOSError) as problem:
            # Headers are gone already: the only honest thing left is to cut the
            # connection so the client sees a truncated body, not a complete one.
            log.warning("upstream broke off a %s %s response mid-body: %s", request.method, request.path, problem)
            if request.transport is not None:
                request.transport.abort()
            raise

    def _hand_over(self, request: web.BaseRequest, upstream: aiohttp.ClientResponse, match: RouteMatch | None,
                   body: bytes) -> None:
        """After the client has the whole answer: queue the read for the shadow side."""
        # a body copy is kept only for a matched read, when there is a shadow side
        assert self.handoff is not None and match is not None
        self.handoff.offer(captured_read(
            match, request.query, request.headers, body, upstream.headers.get(hdrs.CONTENT_TYPE, ""),
            upstream.headers.get(hdrs.CONTENT_ENCODING, "")))

    def _add_forwarded(self, request: web.BaseRequest, headers: CIMultiDict[str]) -> None:
        """X-Forwarded-* per --forwarded-headers (docs/operations.md, "Forwarded headers")."""
        mode = self.limits.forwarded_headers
        if mode == "pass":
            return
        if mode == "overwrite":  # the client's own claims: only what the proxy saw goes on
            for name in {name for name in headers if name.lower().startswith("x-forwarded-")
                         or name.lower() == "forwarded"}:
                headers.popall(name, None)
        peer = request.remote or ""
        headers["X-Forwarded-For"] = forwarded_for(headers.get("X-Forwarded-For"), peer)
        headers.setdefault("X-Forwarded-Proto", request.scheme)
        host = request.headers.get(hdrs.HOST)
        if host is not None:
            headers.setdefault("X-Forwarded-Host", host)

    def refused(self, method: bytes, status: int) -> None:
        """A request the proxy refused itself (400/408/414/431/503): counted by its status."""
        self._count(method.decode("latin-1"), str(status))

    def _refuse(self, request: web.BaseRequest, refused: Refused) -> web.StreamResponse:
        """A request refused before anything of it went upstream: 4xx and close."""
        log.debug("refused a request from %s: %s", request.remote, refused)
        self._count(request.method, str(refused.status))
        response = web.Response(status=refused.status, text=refusal(refused.status).split(b"\r\n\r\n", 1)[1].decode(),
                                headers={hdrs.CACHE_CONTROL: "no-store"})
        response.force_close()
        return response

    async def _body(self, content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
        """The request body as it arrives; BodyStalled when nothing comes for
        --upstream-timeout (the raw engine's bound on a stalled upload too)."""
        while True:
            try:
                chunk = await asyncio.wait_for(content.readany(), self.upstream_timeout)
            except TimeoutError:
                raise BodyStalled from None
            if not chunk:
                return
            yield chunk

    def _body_stalled(self, method: str, started: float, asked: float) -> web.Response:
        """408 and close: the rest of the body would otherwise be read as a request
        (aiohttp reads and drops what still comes for up to 10 s first, as nginx's
        lingering close does)."""
        response = self._own_answer(method, 408, body_timeout_text(self.upstream_timeout), started, asked)
        response.force_close()
        return response

    def _own_answer(self, method: str, status: int, text: str, started: float, asked: float) -> web.Response:
        self._count(method, str(status))
        self.metrics.proxy_seconds.observe(asked - started)
        return web.Response(status=status, text=text, headers={hdrs.CACHE_CONTROL: "no-store"})
