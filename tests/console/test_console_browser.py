"""The console in a real browser (Playwright driving Debian's chromium): three
sidecars write into one evidence store; the console shows the right failing paths,
counts, first and last seen; filters and the example view work; no secret (a document's
token, the console's own token) appears on any page."""
from __future__ import annotations

import time

import aiohttp
import pytest

from shadow.console.cli import start_console
from tests.widgets import FULL_FIELDS, widget_rules

TOKEN = "console-token-0123456789"
ROUTE = "GET /quick/{id}"

PODS = {  # pod -> the keys its clients read (w0009's price and w0012's name differ in PostgreSQL;
    #         w0020's apiToken too, until the recheck's replay lands the dual-write: transient)
    "pod-a": ["/quick/w0009", "/quick/w0001", "/quick/w0002"],
    "pod-b": ["/quick/w0009", "/quick/w0012", "/quick/w0003"],
    "pod-c": ["/quick/w0012", "/quick/w0004", "/quick/w0005", "/widgets/w0020"],
}
RULES = widget_rules("  - route: GET /quick/{id}\n    recheck: 0\n",
                     "  - route: GET /widgets/{id}\n    recheck: {after: [100ms], control: upstream}\n",
                     fields=FULL_FIELDS)


def minute_text(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:00", time.gmtime(stamp // 60 * 60))


@pytest.mark.needs_tool("chromium")
async def test_three_pods_one_console(world, evidence_dsn, start, probe, browser) -> None:
    await world.sql("UPDATE widgets SET price = 12.75 WHERE legacy_object_id = 'w0009'")
    await world.sql("UPDATE widgets SET name = 'renamed' WHERE legacy_object_id = 'w0012'")
    (world.rules / "widgets.yaml").write_text(RULES)
    world.documents["w0020"] = {**world.documents["w0020"], "apiToken": "tok-rotated"}

    async def dual_write_lands(key: str) -> None:  # while the recheck re-reads the control
        await world.sql("UPDATE widgets SET api_token = 'tok-rotated' WHERE legacy_object_id = $1", key)

    world.on_replay = dual_write_lands
    began = time.time()
    sidecars = [await start(evidence=evidence_dsn, evidence_pod=pod) for pod in PODS]
    for sidecar, paths in zip(sidecars, PODS.values(), strict=True):
        direct = await probe.get_all(world.api_url, paths)
        assert await probe.get_all(sidecar.proxy_url, paths) == direct  # the clients' answers, unchanged
    for sidecar in sidecars:
        await probe.settle(sidecar)
        assert await sidecar.evidence.flush()
    ended = time.time()
    console = await start_console(evidence_dsn, "127.0.0.1:0", token=TOKEN)
    try:
        context = await browser.new_context(http_credentials={"username": "ops", "password": TOKEN})
        page = await context.new_page()
        await page.goto(console.url + "/")
        pages_seen = [await page.content()]

        health = await page.inner_text("#health")
        assert "pods reporting 3 of 3" in health
        for sidecar, pod in zip(sidecars, PODS, strict=True):
            assert pod in health and sidecar.rules.current.version in health

        route = page.locator(f'#routes tr[data-route="{ROUTE}"] td')
        cells = await route.all_inner_texts()
        assert cells[2] == "9"  # comparisons on the route, all three pods
        assert cells[3] == "44.44%"  # 4 of 9 persistent (w0009 and w0012, twice each)
        cells = await page.locator('#routes tr[data-route="GET /widgets/{id}"] td').all_inner_texts()
        assert cells[2:5] == ["1", "0.00%", "100.00%"]  # the transient

        rows = {}
        for row in await page.locator("#paths tr.path").all():
            rows[await row.get_attribute("data-path")] = row
        assert set(rows) == {"price", "name", "apiToken"}
        assert await rows["apiToken"].locator("td.persistent").inner_text() == "0"
        assert await rows["apiToken"].locator("td.transient").inner_text() == "1"
        assert await rows["name"].locator("td.persistent").inner_text() == "2"
        price = rows["price"]
        assert await price.locator("td.persistent").inner_text() == "2"
        assert await price.locator("td").nth(3).inner_text() == "22.22%"
        first, last = await price.locator("td.first-seen").inner_text(), await price.locator("td.last-seen").inner_text()
        assert minute_text(began) <= first <= last <= minute_text(ended)

        # the transient's example: both documents, the token redacted on both sides
        await page.click('#paths tr[data-path="apiToken"] a.examples')
        await page.locator("a.example").first.click()
        await page.wait_for_url("**/examples/*")
        pages_seen.append(await page.content())
        for side in ("control", "candidate"):
            line = await page.locator(f'#{side} span.differs[data-path="apiToken"]').inner_text()
            assert line.strip().startswith('"apiToken": "[secret len=')  # masked: length and keyed hash
        history = await page.inner_text("#request")
        assert "1 recheck(s) over" in history and "converged on a recheck" in history
        steps = page.locator("#rechecks tr[data-saw]")  # the one recheck, as a row of its own
        assert await steps.count() == 1
        cells = await steps.first.locator("td").all_inner_texts()
        assert cells[0] == "1" and cells[3] == "converged" and cells[4] == "—"
        await page.goto(console.url + "/")

        # filters live in the URL: "exclude noise" drops the transient-only path, the path
        # filter leaves one row, both survive a reload
        await page.click("#noise-switch")
        await page.wait_for_url("**noise=exclude**")
        assert {await r.get_attribute("data-path") for r in await page.locator("#paths tr.path").all()} == {"price", "name"}
        await page.fill("input[name=path]", "pri")
        await page.click("form.filters button")
        await page.wait_for_url("**path=pri**")
        assert "noise=exclude" in page.url
        await page.reload()
        assert [await r.get_attribute("data-path") for r in await page.locator("#paths tr.path").all()] == ["price"]
        pages_seen.append(await page.content())

        # the example view: both whole documents, the differing path highlighted
        await page.click('#paths tr[data-path="price"] a.examples')
        await page.wait_for_url("**/examples?**")
        pages_seen.append(await page.content())
        assert await page.locator("div.entry").count() == 2  # one example from each pod that saw w0009
        await page.locator("a.example").first.click()
        await page.wait_for_url("**/examples/*")
        pages_seen.append(await page.content())
        control = page.locator('#control span.differs[data-path="price"]')
        candidate = page.locator('#candidate span.differs[data-path="price"]')
        assert "9.5" in await control.inner_text() and "12.75" in await candidate.inner_text()
        assert await page.locator("#control span.differs").count() == 1
        assert "GET /quick/{id} with id=w0009" in await page.inner_text("#request")
        assert "no recheck on this route" in await page.inner_text("#request")

        for html in pages_seen:
            for secret in (TOKEN, "tok-9", "tok-12", "tok-1", "tok-rotated", evidence_dsn):
                assert secret not in html
        # without the token: refused
        async with aiohttp.ClientSession() as session:
            for path in ("/", "/examples?entity=widgets&path=price", "/examples/1"):
                async with session.get(console.url + path) as response:
                    assert response.status == 401 and TOKEN not in await response.text()
        await context.close()
    finally:
        await console.stop()
