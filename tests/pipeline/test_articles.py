"""An articles-like API (tests/pipeline/articles_world.py: tags through a junction
table, favorites, follows, a feed, the current user from the token, filters by tag,
favoriter and author, a catalog with page numbers and a sort parameter) through the
whole sidecar, with rules that use no `ignore:` (issue 20).

Clean data under every query shape: 0 document and 0 list-level findings, every list
read with an outcome, reads with an unmodeled parameter counted as skipped. Planted in
PostgreSQL (a dropped tag row, a dropped favorite, a PostgreSQL-only follow, a
PostgreSQL-only article): each found at its path."""
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

from tests.pipeline.articles_world import (
    RULES,
    UNMODELED,
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


async def run(start: Any, world: ArticlesWorld, rules: Path, wanted: list[tuple[str, str | None]]) -> Any:
    sidecar = await start(upstream=world.api_url, rules=rules, pg=world.pg_dsn, workers=2, source_timeout=5.0,
                          recent_mismatches=10_000)
    direct = await read_all(world.api_url, wanted)
    assert {status for status, _ in direct} == {200}
    assert await read_all(sidecar.proxy_url, wanted) == direct  # byte-transparent
    assert await sidecar.pipeline.drain(60)
    return sidecar


@pytest.mark.parametrize("engine", ["raw"])
async def test_clean_data_under_every_query_shape_gives_no_finding(articles, start, probe) -> None:
    world, rules = articles
    wanted = reads()
    sidecar = await run(start, world, rules, wanted + UNMODELED)
    findings = [(e.outcome, e.route, e.key, e.reason, e.diffs) for e in sidecar.sink.recent(limit=100_000)]
    assert findings == []
    counted = totals(sidecar)
    assert set(counted) == {"match", "skipped"}, counted
    assert counted["skipped"] == len(UNMODELED) == probe.skipped(sidecar, "unmodeled_query")
    # every read has an outcome: documents one by one, empty lists as one match each
    empty_lists = sum(1 for path, reader in wanted if path in ("/api/articles?tag=none", "/api/articles?favorited=nobody",
                                                                "/api/catalog?page=9&limit=3")
                      or (path.startswith("/api/articles/feed") and reader == "dave"))
    assert empty_lists and counted["match"] > len(wanted)


def _found(sidecar: Any) -> list[tuple[str, str, str, str, str]]:
    """(entity, route, key, query, path) of every finding."""
    out = []
    for entry in sidecar.sink.recent(limit=100_000):
        query = (entry.reason or "").removeprefix("list read ?").split(";")[0]
        if entry.outcome == "extra":
            out.append((entry.entity, entry.route, entry.key or "", query, "<extra>"))
        for diff in entry.diffs:
            out.append((entry.entity, entry.route, entry.key or "", query, diff["path"]))
    return out


@pytest.mark.parametrize("engine", ["raw"])
async def test_each_plant_is_found_at_its_path(articles, start) -> None:
    world, rules = articles
    ids = world.ids
    # junction: post-05 loses its tag row in PostgreSQL
    tag = sorted(world.articles["post-05"].tags)[0]
    await world.sql("DELETE FROM article_tags WHERE article_id = $1 AND tag = $2", ids["post-05"], tag)
    # favorites: one favorite of post-04 dropped
    fan = sorted(world.articles["post-04"].favorited_by)[0]
    await world.sql("DELETE FROM favorites WHERE article_id = $1 AND user_id = $2", ids["post-04"], ids[fan])
    # follows: dave follows alice in PostgreSQL only
    await world.sql("INSERT INTO follows VALUES ($1, $2)", ids["dave"], ids["alice"])
    # an article only PostgreSQL has (bob's, the newest)
    await world.sql("INSERT INTO articles VALUES (gen_random_uuid(), 'post-99', 'Title 9 99', $1, $2)", ids["bob"],
                    datetime(2027, 1, 1, tzinfo=UTC))
    sidecar = await run(start, world, rules, reads())
    found = _found(sidecar)
    listed = "GET /api/articles"

    def seen(entity: str, route: str, key: str, query: str | None, path: str) -> bool:
        return any(f[0] == entity and f[1] == route and f[2] == key and (query is None or f[3] == query)
                   and f[4] == path for f in found)

    required = {
        "tag row: the article": ("article", "GET /api/articles/{slug}", "post-05", None, "tagList[*]"),
        "tag row: the tag's list": ("article", listed, "[list]", f"tag={tag}", "articles[*]"),
        "tag row: the tag's total": ("article", listed, "[list]", f"tag={tag}", "articlesCount"),
        "favorite: the count": ("article", "GET /api/articles/{slug}", "post-04", None, "favoritesCount"),
        "favorite: the fan's flag": ("article", "GET /api/articles/{slug}", "post-04", None, "favorited"),
        "favorite: the fan's list": ("article", listed, "[list]", f"favorited={fan}", "articles[*]"),
        "follow: the profile": ("profile", "GET /api/profiles/{username}", "alice", None, "following"),
        "follow: the author on an article": ("article", "GET /api/articles/{slug}", "post-00", None, "author.following"),
        "follow: the feed's rows": ("article", "GET /api/articles/feed", "post-00", None, "<extra>"),
        "follow: the feed's total": ("article", "GET /api/articles/feed", "[list]", None, "articlesCount"),
        "article: in the full list": ("article", listed, "post-99", None, "<extra>"),
        "article: the total": ("article", listed, "[list]", "", "articlesCount"),
        "article: the catalog's total": ("article", "GET /api/catalog", "[list]", None, "totalResults"),
        "article: the catalog's page count": ("article", "GET /api/catalog", "[list]", "limit=7", "totalPages"),  # 14 -> 15 rows: 2 -> 3 pages
    }
    missing = [name for name, finding in required.items() if not seen(*finding)]
    assert missing == [], (missing, sorted(set(found))[:80])
    # nothing about keys no plant touches (dave's own articles do not exist; carol's profile is untouched)
    assert not any(f[0] == "profile" and f[2] in ("bob", "carol", "dave") for f in found)
    assert not any(f[0] == "current_user" for f in found)


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
