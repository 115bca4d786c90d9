"""Hostile query strings and paths against the console (and the filters the admin page
shares): never a 500, never a value rendered unescaped, never the store's error text."""
from __future__ import annotations

import aiohttp
import pytest

from shadow.console.cli import start_console
from shadow.publish.views import DEFAULT_RANGE, Filters

FILTER_CASES = [
    # (query, expected filters)
    ({}, Filters()),
    ({"page": "-1"}, Filters(page=1)),
    ({"page": "0"}, Filters(page=1)),
    ({"page": "abc"}, Filters(page=1)),
    ({"page": "99999999999999999999999"}, Filters(page=100_000)),
    ({"page": "1e3"}, Filters(page=1)),
    ({"range": "1y"}, Filters(range=DEFAULT_RANGE)),
    ({"range": "7d"}, Filters(range="7d")),
    ({"outcome": "match'; --"}, Filters()),
    ({"outcome": "transient"}, Filters(outcome="transient")),
    ({"entity": "a\x00b"}, Filters()),
    ({"path": "x\r\nSet-Cookie: a=b"}, Filters()),
    ({"path": "p" * 5000}, Filters(path="p" * 300)),
    ({"noise": "yes"}, Filters()),
    ({"noise": "exclude"}, Filters(exclude_noise=True)),
    ({"entity": "<script>alert(1)</script>"}, Filters(entity="<script>alert(1)</script>")),  # escaped on output
]


@pytest.mark.parametrize(("query", "expected"), FILTER_CASES)
def test_filters_parse_hostile_values_to_defaults(query, expected) -> None:
    assert Filters.parse(query) == expected


def test_filters_round_trip_through_the_url() -> None:
    import urllib.parse

    filters = Filters(entity="a&b=c", route="GET /x/{id}", path="items[*].v", range="7d", exclude_noise=True, page=3)
    assert Filters.parse(dict(urllib.parse.parse_qsl(filters.query()))) == filters


REQUESTS = [
    "/?page=-1", "/?page=99999999999999999999999", "/?range=%00", "/?entity=%00", "/?path=%27%3BDROP%20TABLE%20x%3B--",
    "/?entity=%3Cscript%3Ealert(1)%3C%2Fscript%3E", "/?path=" + "x" * 5000, "/?outcome=%E2%80%AE", "/?route=%FF%FE",
    "/?entity=a&entity=b", "/examples?entity=%00&path=%00", "/examples?entity=%3Cscript%3E&path=%3Cimg%20src%3Dx%20onerror%3D1%3E",
    "/examples", "/examples?path=" + "y" * 5000,
]
NOT_FOUND = ["/examples/abc", "/examples/-1", "/examples/0", "/examples/99999999999999999999999", "/examples/%D9%A3",
             "/examples/1_000", "/examples/12345"]


async def test_hostile_requests_never_fail_or_reflect_markup(evidence_dsn) -> None:
    console = await start_console(evidence_dsn, "127.0.0.1:0")
    try:
        async with aiohttp.ClientSession() as session:
            for path in REQUESTS:
                async with session.get(console.url + path) as response:
                    body = await response.text()
                    assert response.status == 200, (path, body[:500])
                    assert "<script>" not in body and "<img" not in body, path
                    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
            for path in NOT_FOUND:
                async with session.get(console.url + path) as response:
                    assert response.status == 404, path
            async with session.get(console.url + "/?path=" + "z" * 20000) as response:
                assert response.status == 400  # aiohttp's own request-line limit (8190 bytes), like nginx's 414
            async with session.post(console.url + "/", data={"a": "b"}) as response:
                assert response.status == 405  # nothing to write
    finally:
        await console.stop()
