"""The user path does not depend on the shadow side: PostgreSQL stopped, stalled or
failing, an overflowing queue, a rule that makes everything mismatch — clients get the
same answers, and the shadow side counts what happened."""
from __future__ import annotations

import asyncio
import statistics
from pathlib import Path

import asyncpg

from shadow.demo.embedded import start_postgres

QUICK = [f"/quick/w{n:04d}" for n in range(1, 41)]


async def test_postgres_stopped_leaves_answers_unchanged_and_counts_errors(world, start, probe) -> None:
    server = await asyncio.to_thread(start_postgres)  # a private server: this test stops it
    try:
        await probe.load_widgets(server.dsn, world.documents.values())
        sidecar = await start(pg=server.dsn)
        direct = await probe.get_all(world.api_url, QUICK)
        assert await probe.get_all(sidecar.proxy_url, QUICK) == direct
        await probe.settle(sidecar)
        assert probe.outcomes(sidecar) == {"match": 40}

        await asyncio.to_thread(server.stop)
        assert await probe.get_all(sidecar.proxy_url, QUICK) == direct
        await probe.settle(sidecar)
        assert probe.outcomes(sidecar) == {"match": 40, "error": 40}
        assert sidecar.registry.get_sample_value("shadow_errors_total", {"stage": "fetch"}) >= 1
        ready = await _get_json(sidecar.admin_url + "/readyz")
        assert ready["ready"] is True  # PostgreSQL is not needed to serve

        await asyncio.to_thread(server.start)  # and the shadow side recovers by itself
        for _ in range(50):
            await probe.get_all(sidecar.proxy_url, QUICK[:1])
            await probe.settle(sidecar)
            if probe.outcomes(sidecar)["match"] > 40:
                break
            await asyncio.sleep(0.1)
        assert probe.outcomes(sidecar)["match"] > 40
    finally:
        await asyncio.to_thread(server.cleanup)


async def test_postgres_stalled_by_a_lock_times_out_into_errors(world, start, probe) -> None:
    sidecar = await start(source_timeout=5.0)
    direct = await probe.get_all(world.api_url, QUICK)
    holder = await asyncpg.connect(world.pg_dsn)
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("LOCK TABLE widgets IN ACCESS EXCLUSIVE MODE")
        answers = await probe.get_all(sidecar.proxy_url, QUICK)
        assert answers == direct
        # every client has its answer while the source is locked and before any fetch timed out:
        # nobody waited for the stalled source
        assert probe.outcomes(sidecar) == {}
        await probe.settle(sidecar)
        await transaction.rollback()
    finally:
        await holder.close()
    assert probe.outcomes(sidecar) == {"error": 40}
    assert sidecar.sink.recent() == []  # errors are not listed as mismatches ...
    reasons = {error.reason.split(" (")[0] for error in sidecar.sink.recent_errors}  # ... but as errors,
    assert len(reasons) == 1 and reasons.pop().startswith("fetch: TimeoutError: after ")  # stage, type, message


async def test_postgres_errors_are_error_outcomes(world, start, probe) -> None:
    sidecar = await start()
    direct = await probe.get_all(world.api_url, QUICK[:10])
    await world.sql("ALTER TABLE widgets RENAME TO widgets_gone")
    assert await probe.get_all(sidecar.proxy_url, QUICK[:10]) == direct
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"error": 10}
    assert sidecar.registry.get_sample_value("shadow_errors_total", {"stage": "fetch"}) >= 1
    assert all('relation "widgets" does not exist' in error.reason for error in sidecar.sink.recent_errors)


async def test_an_overflowing_queue_drops_and_counts_without_slowing_clients(world, start, probe) -> None:
    sidecar = await start(queue_size=5, workers=1, batch_size=2, source_timeout=2.0)
    holder = await asyncpg.connect(world.pg_dsn)
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("LOCK TABLE widgets IN ACCESS EXCLUSIVE MODE")  # the worker is stuck
        plain = await probe.timed_get_all(sidecar.proxy_url, [f"/plain/w{n % 40 + 1:04d}" for n in range(200)])
        shadowed = await probe.timed_get_all(sidecar.proxy_url, [f"/quick/w{n % 40 + 1:04d}" for n in range(200)])
        await transaction.rollback()
    finally:
        await holder.close()
    assert all(status == 200 for status, _, _ in shadowed)
    await probe.settle(sidecar)
    dropped = sidecar.registry.get_sample_value("shadow_dropped_total", {"reason": "queue_full"})
    assert dropped >= 150
    assert probe.skipped(sidecar, "queue_full") == dropped
    assert sum(probe.outcomes(sidecar).values()) + dropped == 200  # every read accounted for
    # a loose sanity bound only (speed claims belong to the benchmarks)
    assert statistics.median(s for _, _, s in shadowed) < 5 * statistics.median(s for _, _, s in plain) + 0.01


async def test_a_rule_that_makes_everything_mismatch_does_not_hurt_clients(world, start, probe, tmp_path: Path) -> None:
    broken = tmp_path / "broken-rules"
    broken.mkdir()
    (broken / "widgets.yaml").write_text(probe.rules_text.replace("  name: name\n", "  name: api_token\n"))
    sidecar = await start(rules=broken, explain_rate=2)
    paths = [f"/quick/w{n % 40 + 1:04d}" for n in range(400)]
    plain = await probe.timed_get_all(sidecar.proxy_url, [p.replace("/quick/", "/plain/") for p in paths])
    shadowed = await probe.timed_get_all(sidecar.proxy_url, paths)
    assert [(s, b) for s, b, _ in shadowed] == [(s, b) for s, b, _ in await probe.timed_get_all(world.api_url, paths)]
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"mismatch": 400}  # counting stays exact
    assert sidecar.registry.get_sample_value("shadow_mismatch_fields_total", {"entity": "widgets", "field": "name"}) == 400
    assert sidecar.registry.get_sample_value("shadow_dropped_total", {"reason": "explain_budget"}) > 300
    assert statistics.median(s for _, _, s in shadowed) < 5 * statistics.median(s for _, _, s in plain) + 0.01


async def _get_json(url: str) -> dict:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            return await response.json()
