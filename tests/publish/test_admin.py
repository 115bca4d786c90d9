"""The admin port: probes, metrics, rules, the mismatch view (JSON and a page a person
reads in a browser), the gate hook and reloads."""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shadow.demo.embedded import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


async def get(url: str, **headers: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers) as response:
            return response.status, response.headers.get("Content-Type", ""), await response.text()


async def test_probes(world, start) -> None:
    sidecar = await start()
    assert (await get(sidecar.admin_url + "/healthz"))[0] == 200
    status, _, body = await get(sidecar.admin_url + "/readyz")
    assert status == 200 and json.loads(body)["ready"] is True


async def test_ready_means_rules_loaded_and_listening_not_upstream_reachable(world, start) -> None:
    """An API outage must not take every replica out of the Service at once: readiness
    does not look at the upstream; it goes away only when the proxy stops listening."""
    sidecar = await start(upstream=f"http://127.0.0.1:{free_port()}")
    status, _, body = await get(sidecar.admin_url + "/readyz")
    assert status == 200 and json.loads(body)["ready"] is True
    sidecar.admin.listening = False  # what Sidecar.stop() does before the proxy stops accepting
    status, _, body = await get(sidecar.admin_url + "/readyz")
    assert status == 503 and json.loads(body)["problems"] == ["proxy: not listening"]


async def test_metrics_use_the_contract_names(world, start, probe) -> None:
    sidecar = await start()
    await probe.get_all(sidecar.proxy_url, ["/quick/w0001"])
    await probe.settle(sidecar)
    status, content_type, text = await get(sidecar.admin_url + "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(text)}
    for name in ("shadow_comparisons", "shadow_skipped", "shadow_dropped", "shadow_stage_seconds", "shadow_queue_depth",
                 "shadow_queue_capacity", "shadow_proxy_seconds", "shadow_proxy_requests", "shadow_upstream_seconds",
                 "shadow_event_loop_lag_seconds", "shadow_rules_reloads", "shadow_rules_info"):
        assert name in names, name
    assert 'shadow_comparisons_total{entity="widgets",outcome="match",route="GET /quick/{id}"} 1.0' in text
    for _ in range(40):  # the loop-lag sleeper reports every 250 ms
        if sidecar.registry.get_sample_value("shadow_event_loop_lag_seconds_hist_count"):
            break
        await asyncio.sleep(0.05)
    assert sidecar.registry.get_sample_value("shadow_event_loop_lag_seconds_hist_count") >= 1


async def test_rules_view_shows_version_files_and_routes(world, start) -> None:
    sidecar = await start()
    _, _, body = await get(sidecar.admin_url + "/rules")
    rules = json.loads(body)
    assert rules["version"] == sidecar.rules.current.version
    assert rules["files"] == ["widgets.yaml"]
    assert {route["name"] for route in rules["routes"]} >= {"GET /widgets/{id}", "GET /quick/{id}"}


async def test_mismatch_page_shows_both_values_escaped(world, start, probe) -> None:
    world.documents["w0004"] = {**world.documents["w0004"], "name": "<script>alert(1)</script>"}
    sidecar = await start()
    await probe.get_all(sidecar.proxy_url, ["/quick/w0004", "/quick/w0005"])
    await probe.settle(sidecar)
    status, _, body = await get(sidecar.admin_url + "/mismatches")
    listed = json.loads(body)
    assert listed["counts"]["widgets"] == {"match": 1, "mismatch": 1}
    assert listed["recent"][0]["key"] == "w0004"
    status, content_type, page = await get(sidecar.admin_url + "/mismatches", Accept="text/html")
    assert status == 200 and content_type.startswith("text/html")
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "widget 4" in page  # the candidate value, beside the control


@pytest.mark.needs_tool("chromium")
async def test_mismatch_page_renders_in_a_headless_browser(world, start, probe) -> None:
    await world.sql("UPDATE widgets SET price = 12.75 WHERE legacy_object_id = 'w0009'")
    sidecar = await start()
    await probe.get_all(sidecar.proxy_url, ["/quick/w0009", "/quick/w0010"])
    await probe.settle(sidecar)
    result = await asyncio.to_thread(
        subprocess.run,
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-dev-shm-usage", "--dump-dom", sidecar.admin_url + "/mismatches?format=html"],
        capture_output=True, text=True, timeout=90)
    dom = result.stdout
    assert 'data-key="w0009"' in dom, result.stderr[-2000:]
    assert "<code>price</code>" in dom
    assert "9.5" in dom and "12.75" in dom  # control and candidate side by side
    assert 'id="routes"' in dom and 'id="paths"' in dom  # the per-route and per-path aggregate


async def test_gate_answers_from_the_hook_set_at_startup(world, start) -> None:
    sidecar = await start()
    assert (await get(sidecar.admin_url + "/gate"))[0] == 501

    async def verdict() -> dict:
        return {"decision": "GO", "entities": {}}

    sidecar.set_gate(verdict)
    status, _, body = await get(sidecar.admin_url + "/gate")
    assert status == 200 and json.loads(body)["decision"] == "GO"


async def test_mismatch_page_aggregates_routes_and_paths_and_filters_in_the_url(world, start, probe) -> None:
    await world.sql("UPDATE widgets SET price = 12.75 WHERE legacy_object_id IN ('w0009', 'w0010')")
    await world.sql("UPDATE widgets SET name = 'renamed' WHERE legacy_object_id = 'w0011'")
    sidecar = await start()
    await probe.get_all(sidecar.proxy_url, ["/quick/w0009", "/quick/w0010", "/quick/w0011", "/quick/w0012"])
    await probe.settle(sidecar)
    _, _, page = await get(sidecar.admin_url + "/mismatches?format=html")
    route = page[page.index('<tr data-route="GET /quick/{id}">'):]
    route = route[:route.index("</tr>")]
    assert '<td class="n">4</td>' in route and "75.00%" in route  # 3 of 4 comparisons persistent
    price = page[page.index('data-path="price"'):]
    assert '<td class="n persistent">2</td>' in price[:price.index("</tr>")]
    assert 'data-path="name"' in page
    _, _, filtered = await get(sidecar.admin_url + "/mismatches?format=html&path=pri")
    assert 'data-path="price"' in filtered and 'data-path="name"' not in filtered
    assert 'data-key="w0011"' not in filtered  # the recent entries follow the filter too
    assert 'name="path" value="pri"' in filtered  # the filter stays in the form (and the links)


async def test_mismatch_page_shows_the_shadow_workers_state(world, start) -> None:
    sidecar = await start(shadow_workers=2)
    _, _, page = await get(sidecar.admin_url + "/mismatches?format=html")
    table = page[page.index('<table id="workers">'):]
    table = table[:table.index("</table>")]
    assert table.count('class="clean">ready</td>') == 2 and 'data-worker="1"' in table
