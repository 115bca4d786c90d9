"""Rechecks that tell dual-write lag from divergence: both sides re-read on a schedule,
the control replayed to the upstream (X-Shadow-Recheck: 1, only the allowed headers),
outcomes transient / mismatch / unstable, and the noise baseline. Every wait here is
for an event (a counter, a request the test's API received), never for time."""
from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.widgets import FULL_FIELDS, widget_rules


def use_rules(world: Any, widgets: str) -> None:
    """The pipeline world's widgets, rechecked on `widgets`; /stamped/ after 50 ms."""
    (world.rules / "widgets.yaml").write_text(widget_rules(
        f"  - route: GET /widgets/{{id}}\n    recheck: {widgets}\n",
        "  - route: GET /stamped/{id}\n    recheck: {after: [50ms], control: upstream}\n",
        fields=FULL_FIELDS, extra="redact: [apiToken]\n"))


async def test_a_dual_write_landing_3s_late_is_transient_under_a_1s_5s_schedule(world, start, probe) -> None:
    use_rules(world, "{after: [1s, 5s], control: upstream}")
    sidecar = await start()
    landed = asyncio.Event()

    async def dual_write() -> None:
        await world.sql("UPDATE widgets SET name = 'new name' WHERE legacy_object_id = 'w0005'")
        landed.set()

    world.documents["w0005"] = {**world.documents["w0005"], "name": "new name"}  # the write: Mongo first
    late = asyncio.get_running_loop().call_later(3.0, lambda: asyncio.ensure_future(dual_write()))  # PG 3 s later
    try:
        status, _ = (await probe.get_all(sidecar.proxy_url, ["/widgets/w0005"]))[0]
        assert status == 200
        await probe.settle(sidecar)
    finally:
        late.cancel()
    assert landed.is_set()
    assert probe.outcomes(sidecar) == {"transient": 1}
    assert world.replays and all(path == "/widgets/w0005" for path, _ in world.replays)


async def test_a_late_dual_write_is_transient_when_it_lands_before_the_replay_is_answered(world, start, probe) -> None:
    """The control is re-read first and the candidate after it: a dual-write that lands
    while the recheck reads the control is seen by the candidate read."""
    use_rules(world, "{after: [100ms], control: upstream}")
    sidecar = await start()
    world.documents["w0004"] = {**world.documents["w0004"], "name": "moved on"}

    async def land(key: str) -> None:
        await world.sql("UPDATE widgets SET name = 'moved on' WHERE legacy_object_id = $1", key)

    world.on_replay = land
    await probe.get_all(sidecar.proxy_url, ["/widgets/w0004"])
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"transient": 1}


async def test_a_document_written_while_shadowed_is_never_a_false_mismatch_but_a_planted_divergence_is(
        world, start, probe) -> None:
    use_rules(world, "{after: [100ms, 500ms, 1s, 2s], control: upstream}")
    sidecar = await start()
    key = "w0009"
    writes: asyncio.Queue[tuple[float, int]] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    rng = random.Random(11)

    async def client() -> None:  # writes the price through "the API": Mongo now, PG after a lag
        price = 9
        while not stop.is_set():
            price += 1
            world.documents[key] = {**world.documents[key], "price": f"{price}.5"}
            writes.put_nowait((loop.time(), price))
            await asyncio.sleep(0.02)

    async def dual_writer() -> None:  # applies the writes to PG in order, each 0-150 ms after it was made
        connection = await asyncpg.connect(world.pg_dsn)
        try:
            while True:
                written_at, price = await writes.get()
                await asyncio.sleep(max(0.0, written_at + rng.uniform(0, 0.15) - loop.time()))
                await connection.execute("UPDATE widgets SET price = $1 WHERE legacy_object_id = $2", f"{price}.5", key)
        finally:
            await connection.close()

    tasks = [asyncio.ensure_future(client()), asyncio.ensure_future(dual_writer())]
    try:
        for _ in range(10):
            await probe.get_all(sidecar.proxy_url, [f"/widgets/{key}"])
            await probe.until(lambda: probe.stage_count(sidecar, "compare") >= 1, "the first comparison")
        await probe.settle(sidecar)
        first = probe.outcomes(sidecar)
        assert sum(first.values()) == 10 and "mismatch" not in first and "missing" not in first, first

        await world.sql("UPDATE widgets SET name = 'planted' WHERE legacy_object_id = $1", key)  # a real divergence
        for _ in range(5):
            await probe.get_all(sidecar.proxy_url, [f"/widgets/{key}"])
        await probe.settle(sidecar)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    second = {outcome: count - first.get(outcome, 0) for outcome, count in probe.outcomes(sidecar).items()}
    assert second.get("mismatch") == 5, second
    fields = {s.labels["field"]: s.value for m in sidecar.registry.collect() if m.name == "shadow_mismatch_fields"
              for s in m.samples if s.name.endswith("_total")}
    assert fields == {"name": 5.0}  # the moving price is never blamed
    assert all([d.path for d in entry.diffs] == ["name"] for entry in sidecar.sink.recent() if entry.outcome == "mismatch")


async def test_a_field_generated_per_request_is_noisy_with_a_suggested_ignore(world, start, probe) -> None:
    use_rules(world, "0")
    sidecar = await start()
    await probe.get_all(sidecar.proxy_url, ["/stamped/w0003"])
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"unstable": 1}  # the control kept changing: no verdict, not a mismatch
    assert sidecar.registry.get_sample_value("shadow_noisy_fields_total", {"entity": "widgets", "field": "servedAt"}) == 1
    async with aiohttp.ClientSession() as session:
        async with session.get(sidecar.admin_url + "/mismatches") as answer:
            view = await answer.json()
        async with session.get(sidecar.admin_url + "/mismatches?format=html") as answer:
            page = await answer.text()
    assert view["noisy"] == [{"entity": "widgets", "path": "servedAt", "count": 1, "suggest": "ignore: ['servedAt']"}]
    assert "servedAt" in page and "<code>ignore: ['servedAt']</code>" in page


async def test_the_replay_carries_only_the_allowed_headers_and_never_publishes_them(world, start, probe, tmp_path: Path) -> None:
    use_rules(world, "{after: [50ms], control: upstream, headers: [Authorization]}")
    world.documents["w0006"] = {**world.documents["w0006"], "name": "never written to PG"}
    sidecar = await start()
    async with aiohttp.ClientSession() as session, session.get(
            sidecar.proxy_url + "/widgets/w0006?view=full",
            headers={"Authorization": "Bearer s3cret-token", "Cookie": "session=c00kie"}) as answer:
        assert answer.status == 200
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"mismatch": 1}
    path, headers = world.replays[0]
    assert path == "/widgets/w0006?view=full"
    assert headers["X-Shadow-Recheck"] == "1" and headers["Authorization"] == "Bearer s3cret-token"
    assert "Cookie" not in headers
    sidecar.sink.flush()
    published = (tmp_path / "mismatches.jsonl").read_text() + json.dumps([e.as_json() for e in sidecar.sink.recent()])
    assert "s3cret" not in published and "c00kie" not in published


async def test_the_control_can_be_reread_from_mongo(world, start, probe, mongo_server, mongo_db_name) -> None:
    """`control: mongo`: the stored document shaped like the API's answer is the fresh
    control. A document that moved on in both stores after the read converges (with the
    original answer as control it would be a false mismatch); a planted one does not."""
    from pymongo import AsyncMongoClient

    use_rules(world, "{after: [50ms, 100ms], control: mongo}")
    stored = {key: dict(document) for key, document in world.documents.items()}
    stored["w0007"]["name"] = "moved on"  # written after the API answered, in both stores
    client: AsyncMongoClient = AsyncMongoClient(mongo_server.uri, tz_aware=True)
    try:
        await client[mongo_db_name]["widgets"].insert_many(list(stored.values()))
    finally:
        await client.close()
    await world.sql("UPDATE widgets SET name = 'moved on' WHERE legacy_object_id = 'w0007'")
    await world.sql("UPDATE widgets SET name = 'planted' WHERE legacy_object_id = 'w0006'")
    sidecar = await start(mongo=mongo_server.uri, mongo_db=mongo_db_name)
    await probe.get_all(sidecar.proxy_url, ["/widgets/w0006", "/widgets/w0007"])
    await probe.settle(sidecar)
    assert probe.outcomes(sidecar) == {"mismatch": 1, "transient": 1}
    assert {entry.key: entry.outcome for entry in sidecar.sink.recent()} == {"w0006": "mismatch", "w0007": "transient"}
    assert world.replays == []  # nothing was replayed to the upstream
