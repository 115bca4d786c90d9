"""What both request-path engines share: which headers go on (hop-by-hop filtering,
X-Forwarded-For), the proxy's own 502/504 texts, the request counter, and the shadow
copy of a response body with its hand-over to the shadow side. Neither engine imports
the other: both import this.
"""
from __future__ import annotations

import time
from typing import Any

from multidict import CIMultiDict

from shadow.model import SkipReason
from shadow.publish.metrics import Metrics
from shadow.rules.spec import RouteMatch
from shadow.shadowside import CapturedRead, ShadowSide

#: RFC 9110 §7.6.1 hop-by-hop fields (plus the headers `Connection` names, and Proxy-*)
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                        "upgrade"})
#: the headers that frame a message: a `Connection` header can never make them hop-by-hop
FRAMING = frozenset({"content-length", "transfer-encoding", "host"})
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: methods whose reads can be shadowed (a HEAD has no body to compare)
NO_SHADOW_METHODS = frozenset({"HEAD", "OPTIONS", "CONNECT", "TRACE"})
TRACE_HEADERS = ("traceparent", "tracestate")


def connection_named(connection_values: Any) -> frozenset[str]:
    """The lower-case header names a message must not forward: the hop-by-hop fields
    plus every name its `Connection` header values list, except the framing headers
    (a `Connection: Content-Length` would otherwise strip the length but keep the body:
    request smuggling). Transfer-Encoding stays hop-by-hop: each engine frames anew.
    Shared by both engines."""
    named = set(HOP_BY_HOP)
    for value in connection_values:
        named.update(token.strip().lower() for token in value.split(",") if token.strip())
    named -= FRAMING
    named.update(HOP_BY_HOP)
    return frozenset(named)


def forwardable(lowered: str, drop: frozenset[str]) -> bool:
    """Whether a header (lower-case name) goes on: not hop-by-hop, named by Connection,
    in `drop`, or Proxy-*."""
    return lowered not in drop and not lowered.startswith("proxy-")


def end_to_end(headers: Any, also_drop: frozenset[str] = frozenset()) -> CIMultiDict[str]:
    """The headers a proxy forwards: all but hop-by-hop, Proxy-* and `also_drop`;
    repeated headers (Set-Cookie) kept in order."""
    drop = connection_named(headers.getall("Connection", ())) | also_drop
    forwarded: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        if forwardable(name.lower(), drop):
            forwarded.add(name, value)
    return forwarded


def forwarded_for(previous: str | None, peer: str) -> str:
    """The X-Forwarded-For value sent upstream: the client's chain plus its peer."""
    return f"{previous}, {peer}" if previous else peer


def unreachable_text(upstream: object, problem: BaseException) -> str:
    """The body of the proxy's own 502."""
    return f"502 Bad Gateway: upstream {upstream} unreachable ({type(problem).__name__})\n"


def bad_answer_text(upstream: object, what: str) -> str:
    """The body of the proxy's own 502 when the upstream's answer cannot be passed on."""
    return f"502 Bad Gateway: upstream {upstream} sent {what}\n"


def timeout_text(upstream: object, timeout: float) -> str:
    """The body of the proxy's own 504."""
    return f"504 Gateway Timeout: upstream {upstream} did not answer within {timeout:g}s\n"


def body_timeout_text(timeout: float) -> str:
    """The body of the proxy's own 408 when a request body stops arriving (nginx's
    client_body_timeout answer)."""
    return f"408 Request Timeout: the request body stopped arriving for {timeout:g}s\n"


class BodyStalled(Exception):
    """The client sent part of a request body, then nothing for the timeout."""


class RequestCounter:
    """shadow_proxy_requests_total by method (known ones, else `other`) and code, with
    the label children cached (methods are client input: the label set stays bounded)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._children: dict[tuple[str, str], Any] = {}

    def __call__(self, method: str, code: str) -> None:
        label = method if method in KNOWN_METHODS else "other"
        child = self._children.get((label, code))
        if child is None:
            child = self._children[(label, code)] = self._metrics.proxy_requests.labels(label, code)
        child.inc()


class BoundedCopy:
    """A copy of one response body, chunk by chunk, up to a limit (a chunked body shows its
    size only while streaming). Past the limit it keeps nothing more and calls
    `too_large` once. The shadow copy and the recorder's copy are both one of these."""

    __slots__ = ("_limit", "_size", "chunks")

    def __init__(self, limit: int) -> None:
        self.chunks: list[bytes] | None = []
        self._size = 0
        self._limit = limit

    def add(self, chunk: bytes) -> None:
        if self.chunks is None:
            return
        self._size += len(chunk)
        if self._size > self._limit:
            self.chunks = None
            self.too_large()
        else:
            self.chunks.append(chunk)

    def too_large(self) -> None:
        """Called once, when the body passes the limit."""

    def body(self) -> bytes | None:
        """The whole copy (one chunk: no copy at all), or None when it was given up."""
        return None if self.chunks is None else b"".join(self.chunks)


class BodyCopy(BoundedCopy):
    """The shadow copy of a matched read's body; past the limit the read is skipped
    (body_too_large)."""

    __slots__ = ("_handoff", "_match")

    def __init__(self, handoff: ShadowSide, match: RouteMatch, limit: int) -> None:
        super().__init__(limit)
        self._handoff = handoff
        self._match = match

    def too_large(self) -> None:
        route = self._match.route
        self._handoff.sink.skipped(route.entity, route.name, SkipReason.BODY_TOO_LARGE)


def body_copy(handoff: ShadowSide | None, match: RouteMatch | None, status: int, content_length: int | None,
              limit: int) -> BodyCopy | None:
    """Decide, from the response head only, whether to keep a copy of this body: a rule
    matched, the answer is 2xx, a declared length is within the limit and the shadow
    side admits it. Counts non_2xx / body_too_large skips."""
    if match is None or handoff is None:
        return None
    route = match.route
    if not 200 <= status < 300:
        handoff.sink.skipped(route.entity, route.name, SkipReason.NON_2XX)
        return None
    if content_length is not None and content_length > limit:
        handoff.sink.skipped(route.entity, route.name, SkipReason.BODY_TOO_LARGE)
        return None
    return BodyCopy(handoff, match, limit) if handoff.admit(match) else None


def captured_read(match: RouteMatch, query: Any, headers: Any, body: bytes, content_type: str,
                  content_encoding: str) -> CapturedRead:
    """The CapturedRead handed to the shadow side after the client has its last byte."""
    trace = tuple((name, headers[name]) for name in TRACE_HEADERS if name in headers)
    return CapturedRead(match=match, query=query, headers=headers, body=body, content_type=content_type,
                        content_encoding=content_encoding, trace_headers=trace, enqueued_at=time.monotonic())
