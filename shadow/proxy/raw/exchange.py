"""One request and its answer (`Exchange`), and the framing decisions made for it: the
request head written upstream and the response head written back to the client.

The bottom of the raw engine: the other modules import this one, and it imports none of
them. What an exchange and each part need of the others is stated here as Protocols
(`ClientSide`, `UpstreamSide`, `EngineSide`), so the import graph is
exchange <- upstream <- engine, exchange <- client, and server over both.
"""
from __future__ import annotations

import asyncio
import contextlib
import enum
from typing import TYPE_CHECKING, Protocol

from yarl import URL

from shadow.config import ForwardedHeaders, RequestLimits
from shadow.proxy.forwarding import connection_named, forwardable, forwarded_for
from shadow.proxy.limits import ConnectionSlots, origin_form
from shadow.publish.metrics import Metrics

if TYPE_CHECKING:
    from shadow.proxy.forwarding import BodyCopy
    from shadow.proxy.recording import RecordCopy
    from shadow.rules.spec import RouteMatch

#: never forwarded as received: Host is the upstream's, the body framing is the proxy's own
REQUEST_DROP = frozenset({"host", "expect", "content-length", "transfer-encoding"})


class BodyMode(enum.Enum):
    """How the answer's body goes to the client, decided from the response head."""

    NONE = "none"  # HEAD, 204, 304: no body
    LENGTH = "length"  # as received, under the upstream's Content-Length
    CHUNK = "chunk"  # re-chunked (a chunked or close-delimited body, HTTP/1.1 client)
    CLOSE = "close"  # delimited by closing the connection (HTTP/1.0 client)


class ClientSide(Protocol):
    """A client connection (shadow/proxy/raw/client.py) as the engine and the upstream
    connection use it: where the answer goes, and its flow control."""

    peer: str
    transport: asyncio.Transport | None
    current: Exchange | None
    closing: bool

    @property
    def idle(self) -> bool:
        """No request in flight and no head arriving."""

    def write(self, data: bytes) -> None: ...
    def queue(self, data: bytes) -> None: ...
    def flush(self) -> None: ...
    def drop_queued(self) -> None: ...
    def pause(self, reason: str) -> None: ...
    def resume(self, reason: str) -> None: ...
    def paused_by(self, reason: str) -> bool: ...
    def write_plain(self, status: int, reason: str, body: bytes, head_only: bool, close: bool) -> None: ...
    def next_exchange(self) -> None: ...


class UpstreamSide(Protocol):
    """The upstream connection carrying an exchange (shadow/proxy/raw/upstream.py)."""

    transport: asyncio.Transport | None
    held: bool  # reading paused because the client reads slowly

    def touch(self) -> None:
        """The request body moved: not silence."""

    def release(self, reusable: bool) -> None:
        """The exchange is over: back to the pool, or closed."""

    def abandon(self) -> None:
        """The client went away: aborted, never pooled."""


class EngineSide(Protocol):
    """The engine (shadow/proxy/raw/engine.py `RawProxy`) as both connections use it."""

    loop: asyncio.AbstractEventLoop
    limits: RequestLimits
    slots: ConnectionSlots
    metrics: Metrics
    upstream_timeout: float
    connections: set[ClientSide]

    def dispatch(self, exchange: Exchange) -> None: ...
    def abandon(self, exchange: Exchange) -> None: ...
    def refused(self, method: bytes, status: int) -> None: ...
    def answer_head(self, exchange: Exchange, status: int, reason: bytes, upstream_keep_alive: bool) -> None: ...
    def answer_done(self, exchange: Exchange) -> None: ...
    def upstream_failed(self, exchange: Exchange, problem: BaseException | None, timed_out: bool,
                        stale: bool) -> None: ...


class Stage(enum.IntEnum):
    """Where an exchange is (only ever moves forward; `Exchange` alone moves it)."""

    QUEUED = 0  # parsed, not sent upstream: behind another request, or held for a slow reader
    SENT = 1  # sent (or connecting) upstream, no answer yet
    ANSWERING = 2  # the answer's head is written to the client, its body streaming
    ANSWERED = 3  # complete: the upstream's last byte or the proxy's own answer
    FINISHED = 4  # counted and let go (also: the client went away, or the answer broke off)


class RequestBody(enum.Enum):
    """How the request's body is framed, as the parser read the head."""

    NONE = "none"
    LENGTH = "length"  # Content-Length > 0
    CHUNKED = "chunked"


class Attempt(enum.Enum):
    """The upstream connection the request went out on."""

    FRESH = "fresh"  # a new connection
    POOLED = "pooled"  # a kept-alive one (it may turn out closed: then retried once)
    RETRIED = "retried"  # a new one, after a pooled one turned out closed


class Exchange:
    """One request and its answer: what the client sent, where it is going, and how the
    answer is framed back. The connections' callbacks drive it; its `stage` moves only
    through its own methods (`sent`, `head_written`, `answered`, `finish`)."""

    __slots__ = (
        "asked",
        "attempt",
        "body",
        "body_pending",
        "client",
        "close_delimited",
        "content_length",
        "copy",
        "headers",
        "http10",
        "keep_alive",
        "match",
        "method",
        "mode",
        "own",
        "record",
        "request_done",
        "response_headers",
        "stage",
        "started",
        "status",
        "target",
        "task",
        "upstream",
        "upstream_keep_alive",
    )

    def __init__(self, client: ClientSide) -> None:
        self.client = client
        self.method = b""
        self.target = b""
        self.http10 = False
        self.keep_alive = False
        self.body = RequestBody.NONE
        self.started = 0.0
        self.asked = 0.0
        self.headers: list[tuple[bytes, bytes]] = []
        self.request_done = False
        self.body_pending: list[bytes] = []
        self.upstream: UpstreamSide | None = None
        self.attempt = Attempt.FRESH
        self.stage = Stage.QUEUED
        self.mode: BodyMode | None = None  # set by response_head()
        self.copy: BodyCopy | None = None
        self.record: RecordCopy | None = None  # the --record copy
        self.match: RouteMatch | None = None
        self.status = 0
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.own = 0.0
        self.task: asyncio.Task[None] | None = None
        self.close_delimited = False
        self.upstream_keep_alive = False
        self.content_length: int | None = None  # the request body's, as the parser read it

    # -- the request
    @property
    def chunked_request(self) -> bool:
        return self.body is RequestBody.CHUNKED

    @property
    def has_body(self) -> bool:
        return self.body is not RequestBody.NONE

    # -- where it is
    @property
    def queued(self) -> bool:
        """Not sent upstream yet."""
        return self.stage is Stage.QUEUED

    @property
    def answered_head(self) -> bool:
        """The client has (at least) the answer's head, or nothing more goes to it."""
        return self.stage >= Stage.ANSWERING

    @property
    def response_done(self) -> bool:
        """Nothing more goes to the client for this exchange."""
        return self.stage >= Stage.ANSWERED

    @property
    def reused(self) -> bool:
        return self.attempt is Attempt.POOLED

    @property
    def retried(self) -> bool:
        return self.attempt is Attempt.RETRIED

    def sent(self, attempt: Attempt) -> bool:
        """It goes upstream on `attempt`; True the first time (it is then in flight)."""
        first = self.stage is Stage.QUEUED
        if first:
            self.stage = Stage.SENT
        self.attempt = attempt
        return first

    def head_written(self) -> None:
        self.stage = Stage.ANSWERING

    def answered(self) -> None:
        """Its answer is complete (the upstream's, or the proxy's own)."""
        self.stage = Stage.ANSWERED

    def finish(self) -> bool | None:
        """Let it go: None when it was already; else whether it was in flight (sent
        upstream and not let go before)."""
        stage = self.stage
        if stage is Stage.FINISHED:
            return None
        self.stage = Stage.FINISHED
        return stage is not Stage.QUEUED


def request_head(exchange: Exchange, base_path: bytes, host_header: bytes,
                 forwarded: ForwardedHeaders = "overwrite") -> bytes:
    """The head written upstream when `exchange` is sent: the upstream's base path and
    Host, the end-to-end headers as received, X-Forwarded-* per `forwarded`
    (--forwarded-headers), and the body framed from what the parser read (a
    Content-Length of its own, or chunked): never from a header the client could have
    had dropped or doubled."""
    headers = exchange.headers
    drop = connection_named(value.decode("latin-1") for name, value in headers if name.lower() == b"connection")
    drop = drop | REQUEST_DROP
    path = origin_form(exchange.target)
    target = path if path == b"*" else base_path + path  # OPTIONS * stays *
    lines = [b"%b %b HTTP/1.1\r\nHost: %b\r\n" % (exchange.method, target, host_header)]
    previous_for: bytes | None = None
    proto = host = forwarded_host = None
    overwrite, passing = forwarded == "overwrite", forwarded == "pass"
    for name, value in headers:
        lowered = name.decode("latin-1").lower()
        if lowered == "host":
            host = value
        elif passing:
            pass
        elif lowered.startswith("x-forwarded-") or lowered == "forwarded":
            if overwrite:  # the client's own claims: only what the proxy saw goes on
                continue
            if lowered == "x-forwarded-for":
                if previous_for is None:
                    previous_for = value
                continue
            if lowered == "x-forwarded-proto":
                proto = value
            elif lowered == "x-forwarded-host":
                forwarded_host = value
        if forwardable(lowered, drop):
            lines.append(b"%b: %b\r\n" % (name, value))
    if exchange.chunked_request:
        lines.append(b"Transfer-Encoding: chunked\r\n")
    elif exchange.content_length is not None:
        lines.append(b"Content-Length: %d\r\n" % exchange.content_length)
    if not passing:
        peer = exchange.client.peer
        lines.append(b"X-Forwarded-For: %b\r\n" % forwarded_for(
            previous_for.decode("latin-1") if previous_for else None, peer).encode("latin-1"))
        if proto is None:
            lines.append(b"X-Forwarded-Proto: http\r\n")
        if host is not None and forwarded_host is None:
            lines.append(b"X-Forwarded-Host: %b\r\n" % host)
    lines.append(b"\r\n")
    return b"".join(lines)


def response_head(exchange: Exchange, status: int, reason: bytes) -> tuple[bytes, int | None]:
    """Runs when the upstream's response head is complete: decides how the body goes to
    the client (`exchange.mode`, a BodyMode; keep_alive and
    close_delimited with it) and returns the head to write and the declared body length
    (None when chunked or not given)."""
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
    if exchange.method == b"HEAD" or status in (204, 304):
        exchange.mode = BodyMode.NONE
    elif chunked or length is None:
        exchange.close_delimited = not chunked
        exchange.mode = BodyMode.CLOSE if exchange.http10 else BodyMode.CHUNK
    else:
        exchange.mode = BodyMode.LENGTH
    if exchange.mode is BodyMode.CHUNK:
        lines.append(b"Transfer-Encoding: chunked\r\n")
    elif exchange.mode is BodyMode.CLOSE:
        exchange.keep_alive = False
    if not exchange.keep_alive:
        lines.append(b"Connection: close\r\n")
    elif exchange.http10:
        lines.append(b"Connection: keep-alive\r\n")
    lines.append(b"\r\n")
    return b"".join(lines), length if not chunked else None


def request_path(target: bytes) -> str:
    """The decoded path rules match against (aiohttp's request.path)."""
    return URL(origin_form(target).decode("latin-1"), encoded=True).path
