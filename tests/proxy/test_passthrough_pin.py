"""PassThroughResponse (the aiohttp engine) leans on three private parts of aiohttp's
StreamResponse: the `_prepare_headers` hook, the `_headers` multidict it fills, and the
`_send_headers_immediately` switch. This pins exactly that behaviour against the
installed aiohttp, on a real server, so an aiohttp upgrade that moves them fails here
rather than silently adding a Content-Type to the user's answers."""
from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from multidict import CIMultiDict

from shadow.proxy.aiohttp_engine import PassThroughResponse
from tests.fixtures import serving


def test_the_private_aiohttp_parts_we_override_still_exist() -> None:
    assert inspect.iscoroutinefunction(web.StreamResponse._prepare_headers)
    assert "_prepare_headers" in inspect.getsource(web.StreamResponse._start)  # the hook prepare() runs
    assert web.StreamResponse._send_headers_immediately is True  # so our False changes something
    assert "_send_headers_immediately" in inspect.getsource(web.StreamResponse._write_headers)
    assert isinstance(web.StreamResponse()._headers, CIMultiDict)  # the headers we pop from


@pytest.fixture
async def server() -> AsyncIterator[int]:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = PassThroughResponse(status=200)
        response._keep_no_content_type = request.query.get("keep") == "1"
        await response.prepare(request)
        await response.write(b'{"a":1}')
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/", handler)
    async with serving(app) as url:
        yield int(url.rsplit(":", 1)[1])


async def _raw_get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


async def test_no_content_type_is_added_when_the_upstream_sent_none(server: int) -> None:
    head, _, body = (await _raw_get(server, "/?keep=1")).partition(b"\r\n\r\n")
    assert b"content-type" not in head.lower()
    assert b'{"a":1}' in body


async def test_without_the_override_aiohttp_would_add_one(server: int) -> None:
    head, _, _ = (await _raw_get(server, "/?keep=0")).partition(b"\r\n\r\n")
    assert b"content-type: application/octet-stream" in head.lower()
