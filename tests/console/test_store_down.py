"""Stopping the evidence store mid-run: every client answer is the API's own, every
comparison is still counted in Prometheus, the store's failures are counted as drops,
and once the store is back it receives every count it missed (the counts wait, bounded,
for the next write)."""
from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from shadow.demo.embedded import start_postgres


@pytest.fixture
async def own_store():
    """A PostgreSQL server of its own, so the test can stop and restart it."""
    server = await asyncio.to_thread(start_postgres)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.cleanup)


def comparisons(sidecar) -> int:
    return sum(int(sample.value) for metric in sidecar.registry.collect() if metric.name == "shadow_comparisons"
               for sample in metric.samples if sample.name.endswith("_total"))


def dropped(sidecar, reason: str) -> float:
    return sidecar.registry.get_sample_value("shadow_evidence_dropped_total", {"reason": reason}) or 0.0


async def stored_comparisons(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchval(
            "SELECT coalesce(sum(count), 0)::int FROM shadow_evidence.findings WHERE path = '' "
            "AND outcome NOT LIKE 'skipped:%'")
    finally:
        await connection.close()


async def written(sidecar, hang_guard: float = 60.0) -> None:
    """Until one write succeeds (the writer's own loop may be mid-write when asked)."""
    deadline = time.monotonic() + hang_guard
    while not await sidecar.evidence.flush():
        assert time.monotonic() < deadline, "the evidence store never took a batch"
        await asyncio.sleep(0.05)


async def test_a_stopped_store_changes_no_answer_and_loses_no_count(world, own_store, start, probe) -> None:
    await world.sql("UPDATE widgets SET price = 12.75 WHERE legacy_object_id = 'w0009'")
    sidecar = await start(evidence=own_store.dsn, evidence_pod="pod-a")
    before = [f"/quick/w{n:04d}" for n in range(1, 11)]
    assert await probe.get_all(sidecar.proxy_url, before) == await probe.get_all(world.api_url, before)
    await probe.settle(sidecar)
    await written(sidecar)
    assert await stored_comparisons(own_store.dsn) == comparisons(sidecar) == 10

    await asyncio.to_thread(own_store.stop)
    during = [f"/quick/w{n:04d}" for n in range(11, 31)]
    assert await probe.get_all(sidecar.proxy_url, during) == await probe.get_all(world.api_url, during)
    await probe.settle(sidecar)
    assert comparisons(sidecar) == 30  # Prometheus counted every comparison
    await probe.until(lambda: dropped(sidecar, "store_down") + dropped(sidecar, "timeout") >= 1,
                      "a failed write, counted")
    assert dropped(sidecar, "backlog") == 0

    await asyncio.to_thread(own_store.start)
    await written(sidecar)
    assert await stored_comparisons(own_store.dsn) == 30  # the counts waited for the store


async def test_a_store_that_never_answers_changes_no_answer_and_its_timeouts_are_counted(world, start, probe) -> None:
    """A 'slow' store: a server that accepts connections and never says a word."""
    accepted = asyncio.Event()
    held = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        accepted.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        sidecar = await start(evidence=f"postgresql://shadow@127.0.0.1:{port}/evidence", evidence_pod="pod-a")
        paths = [f"/quick/w{n:04d}" for n in range(1, 21)]
        assert await probe.get_all(sidecar.proxy_url, paths) == await probe.get_all(world.api_url, paths)
        await probe.settle(sidecar)
        assert comparisons(sidecar) == 20
        await accepted.wait()
        await probe.until(lambda: dropped(sidecar, "timeout") >= 1, "a write that timed out, counted")
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
