"""The differential wire suite: hostile requests, byte for byte, through both engines to
an upstream that records what it receives (tests/proxy/wire_upstream.py). Each vector
must either be refused with a 4xx (nothing upstream) or arrive upstream as exactly the
request(s) it names, with the same body; a sentinel request on a fresh connection
afterwards shows the pooled upstream connections were left in step.

Adding a vector is one `Vector(...)` line in VECTORS.
"""
from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from shadow.config import Config
from shadow.sidecar import Sidecar, start_sidecar
from tests.proxy.conftest import canned_upstream
from tests.proxy.wire_upstream import RecordingUpstream


@dataclass(frozen=True)
class Req:
    """A request the upstream must receive: method, target, body."""

    method: bytes
    target: bytes
    body: bytes = b""


@dataclass(frozen=True)
class Vector:
    """Hostile bytes sent on one client connection. `forwards`: what the upstream must
    receive, in order (each answered 200); `refuse`: the status the client then gets
    (any 4xx when 400 is given for a parser error), after which the connection closes;
    `either`: refusing the whole thing (4xx first, nothing upstream) is fine too."""

    name: str
    raw: bytes
    forwards: tuple[Req, ...] = ()
    refuse: int | None = None
    either: bool = False


def post(body: bytes = b"hello", target: bytes = b"/v") -> tuple[Req]:
    return (Req(b"POST", target, body),)


H = b"Host: api\r\n"
CHUNKED_HELLO = b"5\r\nhello\r\n0\r\n\r\n"

VECTORS = (
    # -- Content-Length / Transfer-Encoding matrix
    Vector("cl", b"POST /v HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello", post()),
    Vector("cl-zero-get", b"GET /v HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n", (Req(b"GET", b"/v"),)),
    Vector("get-with-body", b"GET /v HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello", (Req(b"GET", b"/v", b"hello"),)),
    Vector("cl-duplicate-same", b"POST /v HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
           post(), either=True),
    Vector("cl-duplicate-differ", b"POST /v HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", refuse=400),
    Vector("cl-list", b"POST /v HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\nhello", post(), either=True),
    Vector("cl-plus", b"POST /v HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello", refuse=400),
    Vector("cl-negative", b"POST /v HTTP/1.1\r\n" + H + b"Content-Length: -5\r\n\r\nhello", refuse=400),
    Vector("cl-hex", b"POST /v HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\nhello", refuse=400),
    Vector("cl-space-inside", b"POST /v HTTP/1.1\r\n" + H + b"Content-Length: 5 5\r\n\r\nhello", refuse=400),
    Vector("cl-overflow", b"POST /v HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\nhello", refuse=400),
    Vector("cl-and-te", b"POST /v HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
           + CHUNKED_HELLO, refuse=400),
    Vector("te-chunked", b"POST /v HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_HELLO, post()),
    Vector("te-chunked-uppercase", b"POST /v HTTP/1.1\r\n" + H + b"Transfer-Encoding: CHUNKED\r\n\r\n" + CHUNKED_HELLO,
           post(), either=True),
    Vector("te-chunked-identity", b"POST /v HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n\r\nhello", refuse=400),
    Vector("te-identity-chunked", b"POST /v HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity, chunked\r\n\r\n"
           + CHUNKED_HELLO, refuse=400),
    Vector("te-twice", b"POST /v HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
           + CHUNKED_HELLO, refuse=400),
    Vector("te-xchunked", b"POST /v HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\nhello", refuse=400),
    Vector("te-space-before-colon", b"POST /v HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n" + CHUNKED_HELLO,
           refuse=400),
    Vector("te-vertical-tab", b"POST /v HTTP/1.1\r\n" + H + b"Transfer-Encoding: \x0bchunked\r\n\r\n" + CHUNKED_HELLO,
           refuse=400),
    Vector("te-http10", b"POST /v HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_HELLO, refuse=400),
    # -- chunk sizes
    Vector("chunk-extension", b"POST /v HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\n\r\n",
           post()),
    Vector("chunk-overflow", b"POST /v HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
           b"FFFFFFFFFFFFFFFFF5\r\nhello\r\n0\r\n\r\n", refuse=400),
    Vector("chunk-negative", b"POST /v HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
           refuse=400),
    Vector("chunk-hex-junk", b"POST /v HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5g\r\nhello\r\n0\r\n\r\n",
           refuse=400),
    Vector("chunk-0x", b"POST /v HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
           refuse=400),
    Vector("chunk-short", b"POST /v HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
           refuse=400),
    # -- message syntax
    Vector("obs-fold", b"GET /v HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", refuse=400),
    Vector("bare-lf", b"GET /v HTTP/1.1\n" + H.replace(b"\r", b"") + b"\n", refuse=400),
    Vector("bare-lf-in-header", b"GET /v HTTP/1.1\r\nHost: api\nX-A: a\r\n\r\n", refuse=400),
    Vector("nul-in-header", b"GET /v HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", refuse=400),
    Vector("http09", b"GET /v\r\n\r\n", refuse=400),
    Vector("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", refuse=400),
    Vector("http12", b"GET /v HTTP/1.2\r\n" + H + b"\r\n", refuse=400),
    Vector("http20", b"GET /v HTTP/2.0\r\n" + H + b"\r\n", refuse=400),
    # -- hop-by-hop framing: Connection can never remove the framing headers
    Vector("connection-content-length", b"POST /v HTTP/1.1\r\n" + H + b"Connection: Content-Length\r\nContent-Length: 5\r\n\r\n"
           b"hello", post()),
    Vector("connection-keep-alive-content-length", b"POST /v HTTP/1.1\r\n" + H
           + b"Connection: keep-alive, content-length\r\nContent-Length: 5\r\n\r\nhello", post()),
    Vector("connection-transfer-encoding", b"POST /v HTTP/1.1\r\n" + H + b"Connection: Transfer-Encoding\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_HELLO, post()),
    Vector("connection-host", b"GET /v HTTP/1.1\r\n" + H + b"Connection: Host\r\n\r\n", (Req(b"GET", b"/v"),)),
    # -- targets, methods, Host
    Vector("absolute-form", b"GET http://elsewhere/v?q=1 HTTP/1.1\r\n" + H + b"\r\n", (Req(b"GET", b"/v?q=1"),)),
    Vector("absolute-form-query-slash", b"GET http://evil.example?x=/admin HTTP/1.1\r\n" + H + b"\r\n",
           (Req(b"GET", b"/?x=/admin"),)),
    Vector("absolute-form-query", b"GET http://elsewhere?q=1 HTTP/1.1\r\n" + H + b"\r\n", (Req(b"GET", b"/?q=1"),)),
    Vector("absolute-form-fragment", b"GET http://evil.example#/admin HTTP/1.1\r\n" + H + b"\r\n", refuse=400),
    Vector("absolute-form-bad-host", b"GET http://a..b/v HTTP/1.1\r\n" + H + b"\r\n", refuse=400),
    Vector("absolute-form-other-scheme", b"GET ftp://elsewhere/v HTTP/1.1\r\n" + H + b"\r\n", refuse=400),
    Vector("no-leading-slash", b"GET v HTTP/1.1\r\n" + H + b"\r\n", refuse=400),
    Vector("asterisk-get", b"GET * HTTP/1.1\r\n" + H + b"\r\n", refuse=400),
    Vector("asterisk-options", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n", (Req(b"OPTIONS", b"*"),), either=True),
    Vector("connect", b"CONNECT api:443 HTTP/1.1\r\nHost: api:443\r\n\r\n", refuse=400),
    Vector("no-host", b"GET /v HTTP/1.1\r\n\r\n", refuse=400),
    Vector("no-host-http10", b"GET /v HTTP/1.0\r\n\r\n", (Req(b"GET", b"/v"),)),
    Vector("two-hosts-same", b"GET /v HTTP/1.1\r\n" + H + H + b"\r\n", refuse=400),
    Vector("host-empty", b"GET /v HTTP/1.1\r\nHost: \r\n\r\n", refuse=400),
    Vector("host-slash", b"GET /v HTTP/1.1\r\nHost: x/evil\r\n\r\n", refuse=400),
    Vector("host-slash-http10", b"GET /v HTTP/1.0\r\nHost: x/evil\r\n\r\n", refuse=400),
    Vector("host-double-dot", b"GET /v HTTP/1.1\r\nHost: a..b\r\n\r\n", refuse=400),
    Vector("host-only-dot", b"GET /v HTTP/1.1\r\nHost: .\r\n\r\n", refuse=400),
    Vector("host-ipv6-port", b"GET /v HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", (Req(b"GET", b"/v"),)),
    Vector("host-trailing-dot", b"GET /v HTTP/1.1\r\nHost: api.\r\n\r\n", (Req(b"GET", b"/v"),)),
    # -- methods and paths nginx refuses (options: --trace-method, --dot-segments)
    Vector("trace", b"TRACE /v HTTP/1.1\r\n" + H + b"\r\n", refuse=405),
    Vector("dot-dot-encoded", b"GET /%2e%2e/admin HTTP/1.1\r\n" + H + b"\r\n", refuse=400),
    Vector("dot-dot", b"GET /../admin HTTP/1.1\r\n" + H + b"\r\n", refuse=400),
    Vector("dot-dot-deep", b"GET /a/%2E%2E/%2E%2E/x HTTP/1.1\r\n" + H + b"\r\n", refuse=400),
    Vector("dot-dot-encoded-slash", b"GET /..%2fadmin HTTP/1.1\r\n" + H + b"\r\n", refuse=400),
    Vector("dot-dot-absolute-form", b"GET http://api/%2e%2e/admin HTTP/1.1\r\n" + H + b"\r\n", refuse=400),
    Vector("dot-dot-inside", b"GET /a/%2e%2e/admin HTTP/1.1\r\n" + H + b"\r\n", (Req(b"GET", b"/a/%2e%2e/admin"),)),
    Vector("dot-dot-in-query", b"GET /?x=/../y HTTP/1.1\r\n" + H + b"\r\n", (Req(b"GET", b"/?x=/../y"),)),
    # -- Upgrade: no tunnel, the request (and its body) goes on as a plain one
    Vector("upgrade-with-body", b"POST /v HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
           b"Content-Length: 5\r\n\r\nhello", post()),
    Vector("upgrade-with-chunked-body", b"POST /v HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: h2c\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_HELLO, post()),
    Vector("two-hosts-differ", b"GET /v HTTP/1.1\r\n" + H + b"Host: other\r\n\r\n", refuse=400),
    # -- limits (defaults: 8 KiB request line -> 414, 8 KiB header / 32 KiB headers / 100 headers -> 431)
    Vector("uri-too-long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", refuse=414),
    Vector("header-too-long", b"GET /v HTTP/1.1\r\n" + H + b"X-A: " + b"a" * 9000 + b"\r\n\r\n", refuse=431),
    Vector("headers-too-many", b"GET /v HTTP/1.1\r\n" + H + b"".join(b"X-%d: a\r\n" % n for n in range(101)) + b"\r\n",
           refuse=431),
    Vector("headers-too-large", b"GET /v HTTP/1.1\r\n" + H + b"".join(b"X-%d: %b\r\n" % (n, b"a" * 1000) for n in range(40))
           + b"\r\n", refuse=431),
    # -- pipelining
    Vector("pipelined", b"GET /v1 HTTP/1.1\r\n" + H + b"\r\nPOST /v2 HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello"
           b"GET /v3 HTTP/1.1\r\n" + H + b"\r\n", (Req(b"GET", b"/v1"), Req(b"POST", b"/v2", b"hello"), Req(b"GET", b"/v3"))),
    Vector("pipelined-then-garbage", b"GET /v1 HTTP/1.1\r\n" + H + b"\r\nGARBAGE\r\n\r\n", (Req(b"GET", b"/v1"),), refuse=400, either=True),
    Vector("pipelined-head-too-large", b"GET /v1 HTTP/1.1\r\n" + H + b"\r\nGET /v2 HTTP/1.1\r\n" + H
           + b"".join(b"X-%d: %b\r\n" % (n, b"a" * 4000) for n in range(90)) + b"\r\n", (Req(b"GET", b"/v1"),), refuse=431),
    Vector("pipelined-then-smuggle", b"GET /v1 HTTP/1.1\r\n" + H + b"\r\nPOST /v2 HTTP/1.1\r\n" + H
           + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED_HELLO, (Req(b"GET", b"/v1"),), refuse=400, either=True),
)

SENTINEL = b"GET /sentinel HTTP/1.1\r\nHost: api\r\n\r\n"


@pytest.fixture
def wire_config(recording: RecordingUpstream, widget_rules: Path, make_config: Callable[..., Config]) -> Callable[..., Config]:
    def config(**overrides: object) -> Config:
        return make_config(recording.url, widget_rules, shadow_process="inline", **overrides)
    return config


@pytest.fixture
async def proxy(wire_config: Callable[..., Config]) -> AsyncIterator[Sidecar]:
    sidecar = await start_sidecar(wire_config())
    yield sidecar
    await sidecar.stop()


async def connect(sidecar: Sidecar) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = sidecar.proxy_url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes] | None:
    """One answer (status, head, body), or None when the proxy closed the connection."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    status = int(head.split(b" ", 2)[1])
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    body = await asyncio.wait_for(reader.readexactly(length), 10)
    return status, head, body


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the proxy sends until it closes the connection."""
    try:
        return await asyncio.wait_for(reader.read(-1), 10)
    except ConnectionError:
        return b""


async def exchange(sidecar: Sidecar, raw: bytes, answers: int) -> list[tuple[int, bytes, bytes] | None]:
    reader, writer = await connect(sidecar)
    try:
        writer.write(raw)
        await writer.drain()
        got: list[tuple[int, bytes, bytes] | None] = []
        for _ in range(answers):
            answer = await read_answer(reader)
            got.append(answer)
            if answer is None or answer[0] >= 400:
                break
        return got
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize("vector", VECTORS, ids=[vector.name for vector in VECTORS])
async def test_a_hostile_request_is_refused_or_forwarded_unambiguously(proxy: Sidecar, recording: RecordingUpstream,
                                                                      vector: Vector,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    answers = await exchange(proxy, vector.raw, len(vector.forwards) + (1 if vector.refuse else 0))
    # a sentinel on a fresh connection: reuses the pooled upstream connection, so any
    # leftover bytes from the vector would garble it
    (sentinel,) = await exchange(proxy, SENTINEL, 1)
    assert sentinel is not None and sentinel[0] == 200 and sentinel[2] == b"GET /sentinel 0", sentinel
    assert recording.errors == []
    # a client cannot make the proxy log errors (tracebacks) at will
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []
    received = [(request.method, request.target, request.body) for request in recording.requests
                if request.target != b"/sentinel"]
    first = answers[0] if answers else None
    if vector.either and first is not None and 400 <= first[0] < 500:
        assert received == []
        return
    expected = [(request.method, request.target, request.body) for request in vector.forwards]
    assert received == expected
    statuses = [answer[0] if answer is not None else None for answer in answers]
    assert statuses[:len(expected)] == [200] * len(expected)
    for answer, request in zip(answers, vector.forwards, strict=False):
        assert answer is not None and answer[2] == b"%b %b %d" % (request.method, request.target, len(request.body))
    if vector.refuse is not None:
        status = statuses[len(expected)] if len(statuses) > len(expected) else None
        assert status is not None and 400 <= status < 500, statuses
        if vector.refuse != 400:
            assert status == vector.refuse


SMUGGLE = (b"POST /a HTTP/1.1\r\nHost: x\r\nConnection: Content-Length\r\nContent-Length: 56\r\n\r\n"
           b"POST /capture HTTP/1.1\r\nHost: x\r\nContent-Length: 120\r\n\r\n")
PRIVATE = b"GET /api/private HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer victim-token\r\nCookie: session=victim\r\n\r\n"


async def test_the_smuggling_reproduction_cannot_capture_another_clients_request(proxy: Sidecar,
                                                                               recording: RecordingUpstream) -> None:
    """issue 9, item 1: the body of `Connection: Content-Length` became the next request
    on the pooled upstream connection, and the next client's request its body."""
    assert len(SMUGGLE.split(b"\r\n\r\n", 1)[1]) == 56
    (attacker,) = await exchange(proxy, SMUGGLE, 1)
    (victim,) = await exchange(proxy, PRIVATE, 1)
    assert recording.errors == []
    for request in recording.requests:
        assert b"victim" not in request.body
    assert [request.target for request in recording.requests] == [b"/a", b"/api/private"]
    assert attacker is not None and attacker[2] == b"POST /a 56"
    assert victim is not None and victim[2] == b"GET /api/private 0"
    assert recording.requests[0].header(b"Content-Length") == [b"56"]
    for request in recording.requests:
        assert b"victim" not in request.body
    assert recording.requests[1].header(b"Authorization") == [b"Bearer victim-token"]


async def test_connection_named_framing_in_a_response_is_kept(wire_config: Callable[..., Config],
                                                              framing_upstream: str, widget_rules: Path,
                                                              make_config: Callable[..., Config]) -> None:
    """The response side: an upstream's `Connection: Content-Length` must not strip the
    length the client needs to find the end of the body."""
    sidecar = await start_sidecar(make_config(framing_upstream, widget_rules, shadow_process="inline"))
    try:
        reader, writer = await connect(sidecar)
        try:
            writer.write(b"GET /one HTTP/1.1\r\nHost: api\r\n\r\nGET /two HTTP/1.1\r\nHost: api\r\n\r\n")
            await writer.drain()
            first = await read_answer(reader)
            second = await read_answer(reader)
        finally:
            writer.close()
            await writer.wait_closed()
    finally:
        await sidecar.stop()
    assert first is not None and second is not None
    assert b"content-length: 5" in first[1].lower() and first[2] == b"hello"
    assert second[0] == 200 and second[2] == b"hello"


@pytest.fixture
async def framing_upstream() -> AsyncIterator[str]:
    """Answers every request with a body whose Content-Length its Connection names."""
    async with canned_upstream(b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello") as url:
        yield url


# ---------------------------------------------------------------- pipelining amplification (issue 18, finding 1)

ANSWER_BODY = b"a" * 32 * 1024  # under the 64 KiB aiohttp's writer drains at


def socket_buffer_bytes() -> int:
    """The most a TCP send buffer may grow to here (tcp_wmem's maximum; 4 MiB by default):
    what the kernel may hold of answers a client does not read, beyond the proxy."""
    wmem = Path("/proc/sys/net/ipv4/tcp_wmem")
    return int(wmem.read_text().split()[2]) if wmem.exists() else 4 * 1024 * 1024


#: answers the kernel's buffers may take before the proxy holds the pipeline (plus its
#: own 64 KiB write buffer, the 8 parsed ahead and a margin)
FETCH_BOUND = (socket_buffer_bytes() + 256 * 1024) // len(ANSWER_BODY) + 10
PIPELINED = max(600, 3 * FETCH_BOUND)


async def until(condition: Callable[[], bool], guard: float = 60.0) -> None:
    """Until `condition` holds (checked as the loop runs; `guard` only bounds a hang)."""
    async with asyncio.timeout(guard):
        while not condition():
            await asyncio.sleep(0.005)


def held(sidecar: Sidecar) -> float:
    return sidecar.registry.get_sample_value("shadow_proxy_held_requests_total") or 0.0


async def test_a_client_that_pipelines_and_never_reads_cannot_make_the_proxy_fetch_everything(
        widget_rules: Path, make_config: Callable[..., Config]) -> None:
    """One connection pipelines 600+ GETs for 32 KiB answers (19+ MB) and reads nothing: the
    proxy fetches answers only while the client's socket takes them, then holds the rest
    of the pipeline (shadow_proxy_held_requests_total) instead of buffering answers; once
    the client reads, every answer comes, in order."""
    heads: list[bytes] = []
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(ANSWER_BODY), ANSWER_BODY)
    async with canned_upstream(answer, heads) as url:
        sidecar = await start_sidecar(make_config(url, widget_rules, shadow_process="inline"))
        try:
            client = socket.socket()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client reading nothing
            host, port = sidecar.proxy_url.removeprefix("http://").split(":")
            client.connect((host, int(port)))
            reader, writer = await asyncio.open_connection(sock=client)
            writer.write(b"GET /v HTTP/1.1\r\nHost: api\r\n\r\n" * PIPELINED)
            await until(lambda: held(sidecar) >= 1 or len(heads) >= PIPELINED)
            fetched = len(heads)
            # what the kernel's socket buffers hold (a few MB at most), not the whole pipeline
            assert held(sidecar) >= 1 and fetched <= FETCH_BOUND, (fetched, FETCH_BOUND)
            for _ in range(PIPELINED):
                got = await read_answer(reader)
                assert got is not None and got[0] == 200 and got[2] == ANSWER_BODY
            assert len(heads) == PIPELINED
            writer.close()
        finally:
            await sidecar.stop()


# ---------------------------------------------------------------- pooled-connection poisoning (finding 3)

POISON = b"HTTP/1.1 299 POISON\r\nContent-Length: 6\r\n\r\npoison"


@dataclass
class LateBytesUpstream:
    """Answers each request; after a bodiless answer (a HEAD, a 204) or a sized one it
    writes a whole extra response on the same connection once `poison` is set, then sets `poisoned`."""

    url: str
    poison: asyncio.Event
    poisoned: asyncio.Event


@pytest.fixture
async def late_bytes_upstream() -> AsyncIterator[LateBytesUpstream]:
    poison, poisoned = asyncio.Event(), asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if head.startswith(b"HEAD "):
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
                elif b" /no-content " in head:
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                elif b" /sized " in head:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine")
                    await writer.drain()
                    continue
                await writer.drain()
                await poison.wait()
                writer.write(POISON)
                await writer.drain()
                poisoned.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield LateBytesUpstream(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", poison, poisoned)
    poison.set()
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize("first", [b"HEAD /v HTTP/1.1\r\nHost: api\r\n\r\n",
                                      b"GET /no-content HTTP/1.1\r\nHost: api\r\n\r\n",
                                      b"GET /sized HTTP/1.1\r\nHost: api\r\n\r\n"], ids=["head", "204", "sized"])
async def test_bytes_an_upstream_sends_after_an_answer_never_reach_another_client(
        late_bytes_upstream: LateBytesUpstream, widget_rules: Path, make_config: Callable[..., Config],
        first: bytes) -> None:
    """A pooled upstream connection with bytes waiting on it is never reused: the next
    client (on another connection) gets its own answer, not the leftover."""
    sidecar = await start_sidecar(make_config(late_bytes_upstream.url, widget_rules, shadow_process="inline"))
    try:
        reader, writer = await connect(sidecar)
        writer.write(first)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 204 ")), head
        late_bytes_upstream.poison.set()
        await late_bytes_upstream.poisoned.wait()
        (victim,) = await exchange(sidecar, b"GET /v HTTP/1.1\r\nHost: api\r\n\r\n", 1)
        writer.close()
    finally:
        await sidecar.stop()
    assert victim is not None and (victim[0], victim[2]) == (200, b"fine"), victim


# ---------------------------------------------------------------- odd upstream answers (finding 8)

async def test_an_unsolicited_101_from_the_upstream_is_a_502(widget_rules: Path, make_config: Callable[..., Config]) -> None:
    """No tunnel is ever made: a 101 to a request that asked for no Upgrade is a broken
    upstream, answered 502 (not passed on as if the connection had switched)."""
    switching = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    async with canned_upstream(switching) as url:
        sidecar = await start_sidecar(make_config(url, widget_rules, shadow_process="inline"))
        try:
            (answer,) = await exchange(sidecar, b"GET /v HTTP/1.1\r\nHost: api\r\n\r\n", 1)
        finally:
            await sidecar.stop()
    assert answer is not None and answer[0] == 502, answer


async def test_a_head_answered_with_a_body_gets_its_head_and_the_next_request_its_own_answer(
        widget_rules: Path, make_config: Callable[..., Config]) -> None:
    """An upstream that sends a body to a HEAD (it must not): the client gets the 200 head
    as nginx gives it, and the stray body never becomes the next answer."""
    heads: list[bytes] = []
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    async with canned_upstream(answer, heads) as url:
        sidecar = await start_sidecar(make_config(url, widget_rules, shadow_process="inline"))
        try:
            reader, writer = await connect(sidecar)
            writer.write(b"HEAD /v HTTP/1.1\r\nHost: api\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            writer.write(b"GET /v HTTP/1.1\r\nHost: api\r\n\r\n")
            second = await read_answer(reader)
            writer.close()
        finally:
            await sidecar.stop()
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert b"content-length: 5" in head.lower()
    assert second is not None and (second[0], second[2]) == (200, b"hello"), second


# ---------------------------------------------------------------- forwarded headers (finding 6, --forwarded-headers)

CLAIMS = (b"X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\n"
          b"X-Forwarded-Prefix: /admin\r\nForwarded: for=203.0.113.9;host=evil.example\r\n")
FORWARDED_NAMES = (b"X-Forwarded-For", b"X-Forwarded-Host", b"X-Forwarded-Proto", b"X-Forwarded-Prefix", b"Forwarded")


@pytest.mark.parametrize(("mode", "claims", "expected"), [
    ("overwrite", CLAIMS, ([b"127.0.0.1"], [b"api"], [b"http"], [], [])),
    ("overwrite", b"", ([b"127.0.0.1"], [b"api"], [b"http"], [], [])),
    ("append", CLAIMS, ([b"203.0.113.9, 127.0.0.1"], [b"evil.example"], [b"https"], [b"/admin"],
                        [b"for=203.0.113.9;host=evil.example"])),
    ("append", b"", ([b"127.0.0.1"], [b"api"], [b"http"], [], [])),
    ("pass", CLAIMS, ([b"203.0.113.9"], [b"evil.example"], [b"https"], [b"/admin"], [b"for=203.0.113.9;host=evil.example"])),
    ("pass", b"", ([], [], [], [], [])),
], ids=["overwrite-claims", "overwrite-none", "append-claims", "append-none", "pass-claims", "pass-none"])
async def test_forwarded_headers_follow_the_mode(wire_config: Callable[..., Config], recording: RecordingUpstream,
                                                 mode: str, claims: bytes, expected: tuple[list[bytes], ...]) -> None:
    """overwrite (the default): a client's own X-Forwarded-*/Forwarded never reach the
    upstream, which sees only what the proxy saw; append: behind a trusted proxy that set
    them; pass: as received."""
    sidecar = await start_sidecar(wire_config(forwarded_headers=mode))
    try:
        (answer,) = await exchange(sidecar, b"GET /v HTTP/1.1\r\nHost: api\r\n" + claims + b"\r\n", 1)
    finally:
        await sidecar.stop()
    assert answer is not None and answer[0] == 200
    (received,) = recording.requests
    assert tuple(received.header(name) for name in FORWARDED_NAMES) == expected


def test_the_forwarded_headers_default_is_overwrite(tmp_path: Path) -> None:
    base = {"upstream": "http://127.0.0.1:1", "rules": str(tmp_path)}
    assert Config.parse(base, {}).forwarded_headers == "overwrite"
    assert Config.parse(base, {"SHADOW_FORWARDED_HEADERS": "append"}).forwarded_headers == "append"
    with pytest.raises(ValueError, match="--forwarded-headers"):
        Config.parse({**base, "forwarded_headers": "trust"}, {})


@pytest.mark.parametrize(("option", "raw", "target"), [
    ("trace_method", b"TRACE /v HTTP/1.1\r\nHost: api\r\n\r\n", b"/v"),
    ("dot_segments", b"GET /%2e%2e/admin HTTP/1.1\r\nHost: api\r\n\r\n", b"/%2e%2e/admin"),
    ("dot_segments", b"GET /../admin HTTP/1.1\r\nHost: api\r\n\r\n", b"/../admin"),
], ids=["trace", "dot-dot-encoded", "dot-dot"])
async def test_what_nginx_refuses_is_forwarded_as_sent_when_the_option_says_forward(
        wire_config: Callable[..., Config], recording: RecordingUpstream, option: str, raw: bytes, target: bytes) -> None:
    sidecar = await start_sidecar(wire_config(**{option: "forward"}))
    try:
        (answer,) = await exchange(sidecar, raw, 1)
    finally:
        await sidecar.stop()
    assert answer is not None and answer[0] == 200
    assert [(request.method, request.target) for request in recording.requests] == [(raw.split(b" ")[0], target)]


async def test_an_unreadable_chunk_in_a_later_read_gets_a_400_not_a_wait(proxy: Sidecar, recording: RecordingUpstream) -> None:
    """A chunked body whose bad chunk arrives after its head was forwarded: 400 and close
    at once (the upstream connection is cut before the body ends), on both engines —
    not a wait for more body until --upstream-timeout."""
    reader, writer = await connect(proxy)
    writer.write(b"POST /v HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    await writer.drain()
    await recording.arrived_heads(1)
    writer.write(b"3\r\nhello\r\n0\r\n\r\n")
    answer = await read_answer(reader)
    writer.close()
    assert answer is not None and answer[0] == 400, answer
    assert recording.requests == []
