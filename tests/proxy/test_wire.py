"""HTTP/1.1 on the wire through the proxy, on both engines: pipelined requests, a client
that reads slowly (flow control), a body delimited by the upstream closing, a client
that asks to close, a malformed request."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from shadow.sidecar import Sidecar, start_sidecar


async def _open(sidecar: Sidecar) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = sidecar.proxy_url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def _read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One Content-Length answer: (head, body)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    return head, await asyncio.wait_for(reader.readexactly(length), 5)


@pytest.fixture
async def raw_sidecar(raw_upstream: str, widget_rules: Path, make_config) -> AsyncIterator[Sidecar]:
    sidecar = await start_sidecar(make_config(raw_upstream, widget_rules))
    yield sidecar
    await sidecar.stop()


async def test_pipelined_requests_are_answered_in_order(sidecar: Sidecar) -> None:
    reader, writer = await _open(sidecar)
    try:
        writer.write(b"GET /json/1 HTTP/1.1\r\nHost: api\r\n\r\n"
                     b"POST /echo HTTP/1.1\r\nHost: api\r\nContent-Length: 5\r\n\r\nhello"
                     b"GET /json/3 HTTP/1.1\r\nHost: api\r\n\r\n")
        await writer.drain()
        answers = [await _read_answer(reader) for _ in range(3)]
    finally:
        writer.close()
        await writer.wait_closed()
    assert all(head.startswith(b"HTTP/1.1 200") for head, _ in answers)
    assert b'"_id": "1"' in answers[0][1]
    assert b'"length": 5' in answers[1][1]
    assert b'"_id": "3"' in answers[2][1]


async def test_a_slow_reader_gets_a_large_body_whole(sidecar: Sidecar, upstream) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(upstream.url + "/large") as response:
            large = await response.read()
    reader, writer = await _open(sidecar)
    try:
        writer.write(b"GET /large HTTP/1.1\r\nHost: api\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        await asyncio.sleep(0.3)  # the proxy's send buffer fills: it must stop reading, not fail
        body = bytearray()
        while len(body) < len(large):
            body += await asyncio.wait_for(reader.read(256 * 1024), 5)
            await asyncio.sleep(0.005)
    finally:
        writer.close()
        await writer.wait_closed()
    assert bytes(body) == large


async def test_a_body_delimited_by_the_upstream_closing_arrives_whole(raw_sidecar: Sidecar) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(2):  # and the client's connection is still usable afterwards
            async with session.get(raw_sidecar.proxy_url + "/raw/close-delimited") as response:
                assert response.status == 200
                assert response.headers["X-Raw"] == "2"
                assert await response.read() == b"until close " * 1000


async def test_connection_close_from_the_client_is_honoured(sidecar: Sidecar) -> None:
    reader, writer = await _open(sidecar)
    try:
        writer.write(b"GET /json/5 HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(-1), 5)  # returns only when the proxy closes
    finally:
        writer.close()
        await writer.wait_closed()
    assert raw.startswith(b"HTTP/1.1 200") and raw.endswith(b"}")


async def test_a_malformed_request_is_a_400(sidecar: Sidecar) -> None:
    reader, writer = await _open(sidecar)
    try:
        writer.write(b"GET /json/1 HTTP/1.1\r\nHost: api\r\nBad Header Without Colon\r\n\r\n")
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(-1), 5)
    finally:
        writer.close()
        await writer.wait_closed()
    assert raw.startswith(b"HTTP/1.1 400") or raw.startswith(b"HTTP/1.0 400")
