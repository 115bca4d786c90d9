"""The user path: what a client gets through the proxy is what it gets from the API."""
from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from shadow.demo.embedded import free_port
from shadow.sidecar import Sidecar, start_sidecar


async def fetch(session: aiohttp.ClientSession, method: str, url: str, **kwargs: object) -> tuple[int, str, list[tuple[bytes, bytes]], bytes]:
    async with session.request(method, url, allow_redirects=False, **kwargs) as response:  # type: ignore[arg-type]
        body = await response.read()
        # Header order across different names carries no meaning (RFC 9110 §5.3); the
        # order of repeated fields (Set-Cookie) does, and a stable sort keeps it.
        headers = sorted(((name.lower(), value) for name, value in response.raw_headers if name.lower() != b"date"),
                         key=lambda header: header[0])
        return response.status, response.reason or "", headers, body


CASES = [
    ("GET", "/json/1?x=%2Fa%20b&y=%C3%A9&y=2", None),
    ("GET", "/widgets/abc", None),
    ("GET", "/large", None),
    ("GET", "/stream", None),
    ("GET", "/gzip", None),
    ("GET", "/cookies", None),
    ("HEAD", "/json/7", None),
    ("HEAD", "/large", None),
    ("GET", "/status/404", None),
    ("GET", "/status/500", None),
    ("POST", "/status/503", b"{}"),
    ("GET", "/status/302", None),
    ("DELETE", "/status/204", None),
    ("GET", "/status/304", None),
    ("POST", "/echo", b'{"name": "new widget"}'),
    ("POST", "/echo", bytes(range(256)) * 8192),  # 2 MiB request body
    ("PUT", "/echo", b"replace"),
    ("PATCH", "/echo", b'{"op": "set"}'),
    ("DELETE", "/echo", None),
    ("OPTIONS", "/echo", None),
]


@pytest.mark.parametrize(("method", "path", "body"), CASES, ids=[f"{m} {p[:20]}" for m, p, _ in CASES])
async def test_answers_through_the_proxy_are_byte_identical(sidecar: Sidecar, upstream, method: str, path: str, body: bytes | None) -> None:
    upstream_url = upstream.url
    headers = {"Accept-Encoding": "gzip", "If-None-Match": '"v0"'}
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        direct = await fetch(session, method, upstream_url + path, data=body, headers=headers)
        proxied = await fetch(session, method, sidecar.proxy_url + path, data=body, headers=headers)
    assert proxied[0] == direct[0]
    assert proxied[1] == direct[1]
    assert proxied[2] == direct[2]
    assert proxied[3] == direct[3]


async def test_chunked_request_body_is_streamed_to_the_upstream(sidecar: Sidecar) -> None:
    async def body():
        for index in range(50):
            yield f"part {index};".encode() * 1000
            await asyncio.sleep(0)

    async with aiohttp.ClientSession() as session:
        async with session.post(sidecar.proxy_url + "/headers", data=body()) as response:
            seen = await response.json()
    expected = b"".join(f"part {index};".encode() * 1000 for index in range(50))
    import hashlib

    assert seen["sha256"] == hashlib.sha256(expected).hexdigest()


async def test_hop_by_hop_request_headers_are_dropped_and_forwarded_headers_added(sidecar: Sidecar) -> None:
    headers = {"Connection": "keep-alive, X-Hop-Only", "X-Hop-Only": "private", "Keep-Alive": "timeout=5",
               "TE": "trailers", "Proxy-Authorization": "Basic abc", "X-Request-Id": "r-1",
               "X-Forwarded-For": "203.0.113.9", "Authorization": "Bearer t", "Host": "api.example.com"}
    async with aiohttp.ClientSession() as session:
        async with session.get(sidecar.proxy_url + "/headers?x=1", headers=headers) as response:
            seen = dict((name.lower(), value) for name, value in (await response.json())["headers"])
    for dropped in ("x-hop-only", "keep-alive", "te", "proxy-authorization"):
        assert dropped not in seen
    assert seen["x-request-id"] == "r-1"
    assert seen["authorization"] == "Bearer t"
    assert seen["x-forwarded-for"] == "127.0.0.1"  # --forwarded-headers overwrite (default): the client's is dropped
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == "api.example.com"


async def test_hop_by_hop_response_headers_are_dropped(sidecar: Sidecar) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(sidecar.proxy_url + "/hop") as response:
            assert await response.text() == "hop"
            assert "X-Private-Hop" not in response.headers
            assert "Keep-Alive" not in response.headers
            assert response.headers["X-End-To-End"] == "kept"


async def test_upstream_down_is_a_502_with_a_clear_body(widget_rules: Path, make_config) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    sidecar = await start_sidecar(make_config(closed, widget_rules))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(sidecar.proxy_url + "/widgets/1") as response:
                assert response.status == 502
                text = await response.text()
        assert text.startswith("502 Bad Gateway: upstream") and "unreachable" in text
        sample = sidecar.registry.get_sample_value("shadow_proxy_requests_total", {"method": "GET", "code": "502"})
        assert sample == 1.0
    finally:
        await sidecar.stop()


async def test_silent_upstream_is_a_504_after_the_timeout(sidecar: Sidecar) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(sidecar.proxy_url + "/slow?delay=3") as response:
            # a 504 at all: the proxy's timeout (0.5 s in the fixture) fired before the upstream answered
            assert response.status == 504
            assert "504 Gateway Timeout" in await response.text()


async def test_client_disconnect_frees_the_upstream_response(sidecar: Sidecar, upstream) -> None:
    async with aiohttp.ClientSession() as session:
        response = await session.get(sidecar.proxy_url + "/slow-stream")
        await response.content.readexactly(4096)
        response.close()  # the client goes away mid-body
    await asyncio.wait_for(upstream.gone.wait(), 60)
    assert not upstream.streamed.is_set()  # the upstream noticed the client left, before sending it all


async def test_shutdown_drains_in_flight_requests(upstream, widget_rules: Path, make_config) -> None:
    sidecar = await start_sidecar(make_config(upstream.url, widget_rules, drain_timeout=5))
    async with aiohttp.ClientSession() as session:
        in_flight = asyncio.ensure_future(session.get(sidecar.proxy_url + "/slow?delay=0.5"))
        await asyncio.wait_for(upstream.arrived.wait(), 60)  # the request is in flight upstream
        await sidecar.stop()
        response = await in_flight
        assert response.status == 200
        assert await response.text() == "slow"
        response.release()


async def test_requests_are_counted_by_method_and_status_class(sidecar: Sidecar) -> None:
    async with aiohttp.ClientSession() as session:
        for path in ("/json/1", "/json/2", "/status/404"):
            async with session.get(sidecar.proxy_url + path) as response:
                await response.read()
    registry = sidecar.registry
    assert registry.get_sample_value("shadow_proxy_requests_total", {"method": "GET", "code": "2xx"}) == 2
    assert registry.get_sample_value("shadow_proxy_requests_total", {"method": "GET", "code": "4xx"}) == 1
    assert registry.get_sample_value("shadow_proxy_seconds_count") == 3


async def test_expect_100_continue_is_answered_and_the_body_forwarded(sidecar: Sidecar) -> None:
    host, port = sidecar.proxy_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        body = b'{"name": "with expect"}'
        writer.write(b"POST /echo HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body))
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        writer.write(body)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        answer = await reader.readexactly(length)
        import hashlib
        import json

        assert json.loads(answer)["sha256"] == hashlib.sha256(body).hexdigest()
    finally:
        writer.close()
        await writer.wait_closed()


async def test_an_answer_without_content_type_gets_none_added(raw_upstream: str, widget_rules: Path, make_config) -> None:
    sidecar = await start_sidecar(make_config(raw_upstream, widget_rules))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(sidecar.proxy_url + "/raw/no-content-type") as response:
                assert await response.read() == b"hello"
                assert "Content-Type" not in response.headers
                assert response.headers["X-Raw"] == "1"
    finally:
        await sidecar.stop()


async def test_an_upstream_body_cut_short_reaches_the_client_truncated(raw_upstream: str, widget_rules: Path, make_config) -> None:
    sidecar = await start_sidecar(make_config(raw_upstream, widget_rules))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(sidecar.proxy_url + "/raw/truncated") as response:
                assert response.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):
                    await response.read()  # never a complete-looking body
    finally:
        await sidecar.stop()


async def test_a_stale_pooled_connection_is_retried_for_safe_requests(flaky_keepalive_upstream: str, widget_rules: Path, make_config) -> None:
    sidecar = await start_sidecar(make_config(flaky_keepalive_upstream, widget_rules))
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(3):  # the 2nd and 3rd reuse a connection the upstream then drops
                async with session.get(sidecar.proxy_url + "/anything") as response:
                    assert response.status == 200
                    assert await response.read() == b'{"ok": true}'
            async with session.post(sidecar.proxy_url + "/anything", data=b"x") as response:
                assert response.status == 502  # a POST is not replayed (as nginx): the client decides
            async with session.post(sidecar.proxy_url + "/anything", data=b"x") as response:
                assert response.status == 200  # on a fresh connection
    finally:
        await sidecar.stop()


async def test_an_http_1_0_client_gets_a_streamed_answer_delimited_by_close(sidecar: Sidecar) -> None:
    host, port = sidecar.proxy_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"GET /stream HTTP/1.0\r\nHost: api\r\n\r\n")
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(-1), 5)  # until the proxy closes
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding" not in head.lower()  # HTTP/1.0 has no chunking
    assert body == b"".join(f"chunk {index}\n".encode() * 100 for index in range(20))
