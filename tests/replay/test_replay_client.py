"""The recheck's replay to the upstream against hostile and broken answers: a real
socket server writes exact bytes, and the replay either yields the control document or
raises (ControlGone / RuntimeError) — it never hangs past its timeout, never follows a
redirect, never inflates a bomb, and sends only what the route allows."""
from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shadow.replay.control import ControlGone, Replay, UpstreamControl
from shadow.rules import load_rules
from shadow.rules.spec import Route
from tests.widgets import widget_rules

RULES = widget_rules("  - route: GET /w/{id}\n    recheck: {after: [1s], control: upstream, headers: [Authorization]}\n",
                     fields={"_id": "legacy_object_id", "name": "string"})
DOC = b'{"_id": "w1", "name": "Ada"}'
LIMIT = 4096


def answer(status: str, headers: list[str], body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode("latin-1") + body


def plain(body: bytes, status: str = "200 OK", extra: tuple[str, ...] = ()) -> bytes:
    return answer(status, [f"Content-Length: {len(body)}", "Content-Type: application/json", *extra], body)


def chunked(body: bytes) -> bytes:
    half = len(body) // 2
    parts = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in (body[:half], body[half:]))
    return answer("200 OK", ["Transfer-Encoding: chunked"], parts + b"0\r\n\r\n")


BOMB = gzip.compress(b" " * (LIMIT * 50))

#: (case, the bytes the upstream writes (or None: it never answers), expected document or error text)
TABLE: list[tuple[str, bytes | None, object]] = [
    ("plain JSON", plain(DOC), {"w1"}),
    ("chunked JSON", chunked(DOC), {"w1"}),
    ("gzip JSON", plain(gzip.compress(DOC), extra=("Content-Encoding: gzip",)), {"w1"}),
    ("404", plain(b"{}", "404 Not Found"), ControlGone),
    ("410", plain(b"", "410 Gone"), ControlGone),
    ("500", plain(b"oops", "500 Internal Server Error"), "answered 500"),
    ("redirect not followed", answer("302 Found", ["Location: http://elsewhere/w/w1", "Content-Length: 0"], b""),
     "answered 302"),
    ("not JSON", plain(b"<html>hi</html>"), "not JSON"),
    ("JSON without a document where the route says", plain(b"[1, 2]"), set()),
    ("body over the limit", plain(b"[" + b"1," * LIMIT + b"1]"), "too large"),
    ("gzip bomb", plain(BOMB, extra=("Content-Encoding: gzip",)), "content coding"),
    ("unknown content coding", plain(DOC, extra=("Content-Encoding: br",)), "content coding"),
    ("corrupt gzip", plain(b"\x1f\x8b\x08garbage", extra=("Content-Encoding: gzip",)), "content coding"),
    ("garbage status line", b"HTTP/1.1 abc\r\n\r\n", "replay failed"),
    ("not HTTP at all", b"SSH-2.0-OpenSSH_9.6\r\n", "replay failed"),
    ("closed before answering", b"", "replay failed"),
    ("body shorter than Content-Length", answer("200 OK", ["Content-Length: 100"], DOC), "replay failed"),
    ("bad chunk size", answer("200 OK", ["Transfer-Encoding: chunked"], b"zz\r\n{}\r\n0\r\n\r\n"), "replay failed"),
    ("101 headers", answer("200 OK", [f"X-H{i}: v" for i in range(101)], DOC), "replay failed"),
    ("header line over 64 KiB", answer("200 OK", ["X-Big: " + "a" * 70000], DOC), "replay failed"),
    ("never answers", None, "replay failed"),
]


class Upstream:
    """A socket server that records each request head and writes one canned answer."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.reply: bytes | None = b""
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.heads.append(await reader.readuntil(b"\r\n\r\n"))
            if self.reply is None:  # hold the connection open, say nothing
                await reader.read()
                return
            writer.write(self.reply)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    await server.start()
    yield server
    assert server.server is not None
    server.server.close()


@pytest.fixture
def route(tmp_path: Path) -> Route:
    (tmp_path / "w.yaml").write_text(RULES)
    return load_rules(tmp_path).routes[0]


def control(upstream: Upstream, timeout: float = 5.0) -> UpstreamControl:
    return UpstreamControl(f"http://127.0.0.1:{upstream.port}", timeout, max_bytes=LIMIT)


REPLAY = Replay("GET", "/w/w1?x=1", (("Authorization", "Bearer t0k"),))


@pytest.mark.parametrize(("case", "reply", "expected"), TABLE, ids=[case for case, _, _ in TABLE])
async def test_replay_answers(upstream: Upstream, route: Route, case: str, reply: bytes | None,
                              expected: object) -> None:
    upstream.reply = reply
    reader = control(upstream, timeout=0.5 if reply is None else 5.0)
    if isinstance(expected, set):
        documents = await reader.read(route, {"id": "w1"}, REPLAY)
        assert set(documents) == expected
        assert not expected or documents["w1"]["name"] == "Ada"
    elif expected is ControlGone:
        with pytest.raises(ControlGone):
            await reader.read(route, {"id": "w1"}, REPLAY)
    else:
        with pytest.raises(RuntimeError, match=str(expected)):
            await reader.read(route, {"id": "w1"}, REPLAY)
    assert len(upstream.heads) == 1  # exactly one request: nothing retried, no redirect followed


async def test_the_replay_carries_the_mark_and_only_the_allowed_headers(upstream: Upstream, route: Route) -> None:
    upstream.reply = plain(DOC)
    smuggling = Replay("GET", "/w/w1?x=1", (("Authorization", "Bearer t0k"), ("Host", "evil.example"),
                                            ("Connection", "upgrade"), ("Transfer-Encoding", "chunked"),
                                            ("X-Shadow-Recheck", "0")))
    await control(upstream).read(route, {"id": "w1"}, smuggling)
    head = upstream.heads[0].decode("latin-1").lower()
    lines = head.split("\r\n")
    assert lines[0] == "get /w/w1?x=1 http/1.1"
    assert f"host: 127.0.0.1:{upstream.port}" in lines and "evil.example" not in head
    assert "authorization: bearer t0k" in lines and "x-shadow-recheck: 1" in lines
    assert "x-shadow-recheck: 0" not in lines and "transfer-encoding" not in head
    assert "connection: close" in lines and "upgrade" not in head


async def test_a_header_value_that_could_split_the_request_is_an_error(upstream: Upstream, route: Route) -> None:
    upstream.reply = plain(DOC)
    with pytest.raises(RuntimeError, match="replay failed"):
        await control(upstream).read(route, {"id": "w1"}, Replay("GET", "/w/w1", (("Authorization", "a\r\nX-Evil: 1"),)))
    assert upstream.heads == []


async def test_writes_are_never_replayed(upstream: Upstream, route: Route) -> None:
    with pytest.raises(RuntimeError, match="refusing to replay POST"):
        await control(upstream).read(route, {"id": "w1"}, Replay("POST", "/w/w1"))
    assert upstream.heads == []


async def test_a_refused_connection_is_an_error_not_a_hang(route: Route) -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    with pytest.raises(RuntimeError, match="replay failed"):
        await UpstreamControl(f"http://127.0.0.1:{port}", 5.0).read(route, {"id": "w1"}, REPLAY)

