"""Lists and explanations through the sidecar (issue 12): an empty answer on a complete
list is checked for `extra`; the explanation budget keeps every explanation at 10
mismatches in one go with --explain-rate 20 (the default concurrency)."""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import pytest

from shadow.compare.explain import explain as real_explain


@pytest.mark.parametrize("engine", ["raw"])
async def test_an_empty_complete_list_is_checked_for_extra(world, start, probe) -> None:
    sidecar = await start()
    world.documents.clear()  # the API shows nothing; PostgreSQL still has 40 widgets
    status, body = (await probe.get_all(sidecar.proxy_url, ["/widgets"]))[0]
    assert status == 200 and body == b'{"items": []}'
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"extra": 40}
    assert probe.skipped(sidecar, "no_document") == 0


@pytest.mark.parametrize("engine", ["raw"])
async def test_ten_mismatches_at_once_are_all_explained_by_default(world, start, probe) -> None:
    await world.sql("UPDATE widgets SET name = 'drifted'")
    release = threading.Event()
    entered = threading.Semaphore(0)

    def slow_explain(*args: Any) -> Any:  # the real explanation, held until all ten are in flight
        entered.release()
        release.wait(30)
        return real_explain(*args)

    sidecar = await start(explain_rate=20, _explain=slow_explain)
    await probe.get_all(sidecar.proxy_url, [f"/quick/w{n:04d}" for n in range(1, 11)])
    for _ in range(4):  # the worker threads are busy; the other six wait in line, not dropped
        assert await _acquire(entered)
    dropped = sidecar.registry.get_sample_value("shadow_dropped_total", {"reason": "explain_budget"}) or 0
    release.set()
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"mismatch": 10}
    assert dropped == 0
    assert sidecar.registry.get_sample_value("shadow_dropped_total", {"reason": "explain_budget"}) in (None, 0)
    assert all(entry.explained for entry in sidecar.sink.recent())


async def _acquire(semaphore: threading.Semaphore) -> bool:
    """Wait for one explanation to start, on a thread of our own (the default executor's
    threads are the ones the explanations hold)."""
    with ThreadPoolExecutor(1) as own:
        return await asyncio.get_running_loop().run_in_executor(own, semaphore.acquire, True, 30)


@pytest.mark.parametrize("engine", ["raw"])
async def test_unverifiable_paths_are_counted_on_metrics_rules_and_the_gate(world, start, probe) -> None:
    from shadow.gate.criteria import parse_criteria
    from shadow.gate.local import evaluate_local
    from shadow.gate.report import render_table

    rules = world.rules / "widgets.yaml"
    rules.write_text(rules.read_text().replace("  apiToken: api_token\n", "  apiToken: api_token\nunverifiable: [apiToken]\n"))
    await world.sql("UPDATE widgets SET api_token = 'rotated in PG'")  # not verified: no mismatch
    sidecar = await start()
    await probe.get_all(sidecar.proxy_url, [f"/quick/w{n:04d}" for n in range(1, 6)])
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"match": 5}
    assert sidecar.registry.get_sample_value("shadow_unverifiable_total", {"entity": "widgets", "field": "apiToken"}) == 5
    async with aiohttp.ClientSession() as session, session.get(sidecar.admin_url + "/rules") as response:
        assert (await response.json())["unverifiable"] == {"widgets": {"apiToken": 5}}
    report = evaluate_local(sidecar.registry, parse_criteria("window: 7d\nentities:\n  widgets: {}\n"))
    assert "widgets: not verified (declared unverifiable): apiToken x5" in render_table(report)
