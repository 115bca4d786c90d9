"""A real upstream HTTP server with every kind of answer a proxy must pass through
unchanged, and a sidecar in front of it (widget rules, no shadow source)."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from shadow.config import Config
from shadow.sidecar import Sidecar, start_sidecar
from tests.proxy.wire_upstream import RecordingUpstream
from tests.widgets import widget_rules

WIDGET_RULES = widget_rules("  - route: GET /widgets/{id}\n    recheck: 0\n", fields={"name": "name"})

LARGE = os.urandom(3 * 1024 * 1024 + 17)


async def _json(request: web.Request) -> web.Response:
    number = request.match_info["n"]
    return web.json_response({"_id": number, "name": f"widget {number}", "q": dict(request.query)})


async def _large(request: web.Request) -> web.Response:
    return web.Response(body=LARGE, content_type="application/octet-stream")


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/plain", "X-Streamed": "yes"})
    await response.prepare(request)
    for index in range(20):
        await response.write(f"chunk {index}\n".encode() * 100)
        await asyncio.sleep(0.005)
    await response.write_eof()
    return response


async def _gzip(request: web.Request) -> web.Response:
    body = gzip.compress(b'{"_id": "g", "name": "zipped"}' * 50, mtime=0)
    return web.Response(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json", "Vary": "Accept-Encoding"})


async def _status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    if code in (204, 304):
        return web.Response(status=code, headers={"ETag": '"v1"'})
    headers = {"Location": "/elsewhere"} if 300 <= code < 400 else {}
    return web.Response(status=code, text=f"status {code} from upstream\n", headers=headers, reason=f"Custom Reason {code}")


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({"method": request.method, "sha256": hashlib.sha256(body).hexdigest(),
                              "length": len(body), "path_qs": request.raw_path})


async def _headers(request: web.Request) -> web.Response:
    """What the upstream received: headers (in order) and the body's digest."""
    body = await request.read()
    return web.json_response({"headers": [[name, value] for name, value in request.headers.items()],
                              "sha256": hashlib.sha256(body).hexdigest(), "length": len(body)})


async def _cookies(request: web.Request) -> web.Response:
    response = web.Response(text="cookies")
    response.headers.add("Set-Cookie", "a=1; Path=/")
    response.headers.add("Set-Cookie", "b=2; Path=/; HttpOnly")
    response.headers.add("X-Multi", "one")
    response.headers.add("X-Multi", "two")
    return response


async def _hop(request: web.Request) -> web.Response:
    return web.Response(text="hop", headers={"Connection": "X-Private-Hop", "X-Private-Hop": "secret",
                                             "Keep-Alive": "timeout=5", "X-End-To-End": "kept"})


async def _slow(request: web.Request) -> web.Response:
    request.app[ARRIVED].set()  # tests wait for this event, not for time
    await asyncio.sleep(float(request.query.get("delay", "1")))
    return web.Response(text="slow")


async def _slow_stream(request: web.Request) -> web.StreamResponse:
    """Streams for as long as the client reads; records when it notices the client left."""
    response = web.StreamResponse()
    await response.prepare(request)
    try:
        for _ in range(400):
            await response.write(b"x" * 1024)
            await asyncio.sleep(0.01)
    except (ConnectionResetError, asyncio.CancelledError):
        request.app[GONE].set()
        raise
    request.app[STREAMED].set()
    request.app[GONE].set()  # finished: the client did not leave early
    return response


GONE = web.AppKey("gone", asyncio.Event)
STREAMED = web.AppKey("streamed", asyncio.Event)
ARRIVED = web.AppKey("arrived", asyncio.Event)


def upstream_app() -> web.Application:
    app = web.Application()
    app[GONE] = asyncio.Event()
    app[STREAMED] = asyncio.Event()
    app[ARRIVED] = asyncio.Event()
    app.router.add_get("/widgets/{n}", _json)
    app.router.add_get("/json/{n}", _json)
    app.router.add_get("/large", _large)
    app.router.add_get("/stream", _stream)
    app.router.add_get("/gzip", _gzip)
    app.router.add_route("*", "/status/{code}", _status)
    app.router.add_route("*", "/echo", _echo)
    app.router.add_route("*", "/headers", _headers)
    app.router.add_get("/cookies", _cookies)
    app.router.add_get("/hop", _hop)
    app.router.add_get("/slow", _slow)
    app.router.add_get("/slow-stream", _slow_stream)
    return app


async def serve_app(app: web.Application, host: str = "127.0.0.1") -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    return runner, f"http://{host}:{runner.addresses[0][1]}"


@dataclass
class Upstream:
    url: str
    gone: asyncio.Event  # set when /slow-stream noticed its client left (or finished)
    streamed: asyncio.Event  # set when /slow-stream sent its whole body (the client stayed)
    arrived: asyncio.Event  # set when a /slow request reached the upstream


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    app = upstream_app()
    runner, url = await serve_app(app)
    yield Upstream(url, app[GONE], app[STREAMED], app[ARRIVED])
    await runner.cleanup()


@pytest.fixture
def widget_rules(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "widgets.yaml").write_text(WIDGET_RULES)
    return folder


ENGINES = ("aiohttp", "raw")


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each proxy test runs on both request-path engines (`--engine`)."""
    return request.param


@pytest.fixture
def make_config(engine: str) -> Callable[..., Config]:
    return functools.partial(sidecar_config, engine=engine)


def sidecar_config(upstream_url: str, rules: Path, **overrides: object) -> Config:
    values: dict[str, object] = dict(upstream=upstream_url, rules=rules, listen="127.0.0.1:0",
                                     admin_listen="127.0.0.1:0", reload="signal", workers=2)
    values.update(overrides)
    return Config(**values)  # type: ignore[arg-type]


@pytest.fixture
async def sidecar(upstream: Upstream, widget_rules: Path, tmp_path: Path, engine: str) -> AsyncIterator[Sidecar]:
    running = await start_sidecar(sidecar_config(upstream.url, widget_rules, mismatch_log=str(tmp_path / "mismatches.jsonl"),
                                                 upstream_timeout=0.5, drain_timeout=5, engine=engine))
    yield running
    await running.stop()


RAW_ANSWERS = {
    b"/raw/no-content-type": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Raw: 1\r\n\r\nhello",
    b"/raw/truncated": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + b'{"_id": "1", ' ,
    # no Content-Length, not chunked: the body ends when the connection does
    b"/raw/close-delimited": b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nX-Raw: 2\r\n\r\n" + b"until close " * 1000,
}


@pytest.fixture
async def raw_upstream() -> AsyncIterator[str]:
    """An HTTP/1.1 server written by hand, for answers aiohttp would not produce: no
    Content-Type, a body cut short. One canned answer per path, then the connection closes."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ", 2)[1].split(b"?", 1)[0]
        writer.write(RAW_ANSWERS.get(path, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    server.close()
    await server.wait_closed()


@pytest.fixture
async def flaky_keepalive_upstream() -> AsyncIterator[str]:
    """Answers the first request of each connection (keep-alive) and closes the
    connection without answering the second: what a pooled connection looks like when
    the upstream's keep-alive timeout fires just as the proxy reuses it."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"ok\": true}")
        await writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    server.close()
    await server.wait_closed()


@pytest.fixture
async def recording() -> AsyncIterator[RecordingUpstream]:
    """A raw-socket upstream that records the exact bytes of each request (wire_upstream.py)."""
    upstream = RecordingUpstream()
    await upstream.start()
    yield upstream
    upstream.release.set()
    await upstream.stop()


@contextlib.asynccontextmanager
async def canned_upstream(answer: bytes, heads: list[bytes] | None = None) -> AsyncIterator[str]:
    """A socket upstream that writes the same exact bytes after every request head (each
    head appended to `heads` when given)."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if heads is not None:
                    heads.append(head)
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()
