"""The console's pages over a store filled by a real EvidenceWriter (its clock set, so
the findings land at known minutes): pagination, ordering, first and last seen to the
minute in the hourly windows too, the trend."""
from __future__ import annotations

import re
import time

import aiohttp
from prometheus_client import CollectorRegistry

from shadow.console.cli import start_console
from shadow.publish.evidence import EvidenceSettings, EvidenceWriter

ROUTE = "GET /things/{id}"


async def page(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return await response.text()


def paths_on(html: str) -> list[str]:
    return re.findall(r'<tr class="path" data-entity="things" data-path="([^"]+)">', html)


async def test_pages_order_and_first_last_seen(evidence_dsn) -> None:
    now = time.time() // 60 * 60
    clock = [now - 3 * 3600]
    writer = EvidenceWriter(EvidenceSettings(dsn=evidence_dsn, pod="pod-a"), CollectorRegistry(), clock=lambda: clock[0])
    for n in range(120):  # path pNNN fails, 3 h ago and 1 h 40 min later
        writer.count("things", ROUTE, "match", 10)
        for at in (clock[0], clock[0] + 100 * 60):
            writer.count("things", ROUTE, "mismatch", (n + 1) // 2 or 1, path=f"p{n:03d}", at=at)
    assert await writer.flush()
    await writer.close()
    console = await start_console(evidence_dsn, "127.0.0.1:0")
    try:
        first = await page(console.url + "/?range=24h")
        shown = paths_on(first)
        assert len(shown) == 50 and shown[0] == "p119" and shown[1] in ("p118", "p117")  # most persistent first
        assert 'rel="next" href="/?page=2"' in first  # 24h is the default: not spelled out and 'rel="prev"' not in first
        last = await page(console.url + "/?range=24h&page=3")
        assert len(paths_on(last)) == 20 and 'rel="next"' not in last and 'rel="prev"' in last
        row = first[first.index('data-path="p119"'):]
        row = row[:row.index("</tr>")]
        assert time.strftime("%Y-%m-%d %H:%M:00", time.gmtime(now - 3 * 3600)) in row  # first seen, to the minute
        assert time.strftime("%Y-%m-%d %H:%M:00", time.gmtime(now - 80 * 60)) in row  # last seen
        assert "<svg" in row and "<polyline" in row
        routes = first[first.index('<table id="routes">'):]
        routes = routes[:routes.index("</table>")]
        # the route's last finding is the minute too, not the hour the roll-up keeps it under
        assert time.strftime("%Y-%m-%d %H:%M:00", time.gmtime(now - 80 * 60)) in routes
        assert paths_on(await page(console.url + "/?range=1h")) == []  # nothing in the last hour
        only = await page(console.url + "/?range=24h&path=p11")
        assert sorted(paths_on(only)) == [f"p11{n}" for n in range(10)]
    finally:
        await console.stop()
