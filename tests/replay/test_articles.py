"""An articles-like API with a write loop beside the reads (issue 20): the API's data is
in memory (tests/replay/articles_world.py), so the test writes it and PostgreSQL gets
each write a little later — a dual-write lag. Lists and documents that differed converge
on their rechecks. (Clean data and planted divergences on the Mongo-backed sample API:
test_sample_articles.py.)"""
from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from tests.replay.articles_world import (
    RULES,
    USERS,
    Article,
    ArticlesWorld,
    app,
    build,
    load,
    reads,
    token,
)

ENTITIES = ("article", "current_user", "profile")


@pytest.fixture
async def articles(pg_dsn: str, tmp_path: Path) -> AsyncIterator[tuple[ArticlesWorld, Path]]:
    world = build(pg_dsn)
    await load(world)
    rules = tmp_path / "articles-rules"
    rules.mkdir()
    (rules / "articles.yaml").write_text(RULES)
    runner = web.AppRunner(app(world))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    world.api_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield world, rules
    await runner.cleanup()


async def read_all(base: str, wanted: list[tuple[str, str | None]]) -> list[tuple[int, bytes]]:
    semaphore = asyncio.Semaphore(8)
    results: list[tuple[int, bytes]] = [(0, b"")] * len(wanted)
    async with aiohttp.ClientSession() as session:
        async def one(index: int, path: str, reader: str | None) -> None:
            headers = {"Authorization": token(reader)} if reader else {}
            async with semaphore, session.get(base + path, headers=headers) as response:
                results[index] = (response.status, await response.read())
        await asyncio.gather(*(one(index, path, reader) for index, (path, reader) in enumerate(wanted)))
    return results


def totals(sidecar: Any) -> Counter[str]:
    counted: Counter[str] = Counter()
    for entity in ENTITIES:
        counted.update(sidecar.sink.counts.get(entity, {}))
    return counted


@pytest.mark.parametrize("engine", ["raw"])
async def test_a_write_loop_beside_the_reads_converges(articles, start) -> None:
    """Favorites toggled and articles created while the reads run; PostgreSQL gets each
    write 20-60 ms after the API (a dual-write lag). Documents and lists that differed
    converge on their rechecks: transient (or unstable), never a finding."""
    world, rules = articles
    for name in ("articles.yaml",):
        text = (rules / name).read_text()
        (rules / name).write_text(text.replace("{after: [100ms, 200ms], headers: [authorization]}",
                                               "{after: [200ms, 1s, 3s], headers: [authorization]}")
                                  .replace("    key: {path: slug, normalize: lower}\n",
                                           "    key: {path: slug, normalize: lower}\n"
                                           "    recheck: {after: [200ms, 1s, 3s], headers: [authorization]}\n"))
    rng = random.Random(20)
    pool = await asyncpg.create_pool(world.pg_dsn, min_size=1, max_size=4)
    lagging: list[asyncio.Task[None]] = []

    async def later(statement: str, *args: Any) -> None:
        await asyncio.sleep(rng.uniform(0.02, 0.06))  # the dual-write lag
        await pool.execute(statement, *args)

    async def writes() -> None:
        for number in range(24):
            if number % 6 == 5:
                slug = f"post-{100 + number}"
                created = datetime(2026, 9, 1, tzinfo=UTC).replace(minute=number)
                world.articles[slug] = Article(slug, f"Title 1 {number}", "carol", {"tea"}, created)
                world.ids[slug] = uuid.uuid4()
                lagging.append(asyncio.create_task(later(
                    "WITH a AS (INSERT INTO articles VALUES ($1, $2, $3, $4, $5)) "
                    "INSERT INTO article_tags VALUES ($1, 'tea')",
                    world.ids[slug], slug, f"Title 1 {number}", world.ids["carol"], created)))
            else:
                article = world.articles[f"post-{rng.randrange(14):02d}"]
                user = rng.choice(USERS)
                if user in article.favorited_by:
                    article.favorited_by.discard(user)
                    lagging.append(asyncio.create_task(later(
                        "DELETE FROM favorites WHERE article_id = $1 AND user_id = $2",
                        world.ids[article.slug], world.ids[user])))
                else:
                    article.favorited_by.add(user)
                    lagging.append(asyncio.create_task(later(
                        "INSERT INTO favorites VALUES ($1, $2)", world.ids[article.slug], world.ids[user])))
            await asyncio.sleep(0.03)  # the write loop's pace

    sidecar = await start(upstream=world.api_url, rules=rules, pg=world.pg_dsn, workers=2, source_timeout=5.0,
                          recent_mismatches=10_000)
    try:
        statuses = await asyncio.gather(read_all(sidecar.proxy_url, reads()), writes())
        await asyncio.gather(*lagging)
    finally:
        await pool.close()
    assert {status for status, _ in statuses[0]} == {200}
    assert await sidecar.pipeline.drain(120)
    counted = totals(sidecar)
    findings = [(e.outcome, e.route, e.key, e.reason, e.diffs) for e in sidecar.sink.recent(limit=100_000)
                if e.outcome not in ("transient", "unstable")]
    assert findings == [], findings[:5]
    assert counted["mismatch"] == counted["missing"] == counted["extra"] == counted["error"] == 0, counted
    assert counted["match"] > 0 and counted["transient"] > 0, counted  # the lag was seen, and closed
