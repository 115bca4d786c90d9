"""The sample API's articles family (shadow/demo/marketplace/articles.py, issue 20)
through the whole sidecar with the shipped example rules (rules/examples/articles, no
`ignore:`): tags through a junction table, favorites, follows, a feed, the current user
from the token, filters by tag, favoriter and author (an unknown author dropping the
filter), a catalog with page numbers and a sort parameter.

Clean data under every query shape: 0 document and 0 list-level findings, reads with an
unmodeled parameter counted as skipped. Each planted divergence (articledata.py) is found
at its path."""
from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from shadow.demo.marketplace.api import create_app
from shadow.demo.marketplace.articledata import TAGS, Articles, plant_articles
from shadow.demo.marketplace.cli import LoadedDomain, load_domain
from shadow.demo.marketplace.views import demo_token

RULES = Path(__file__).resolve().parents[2] / "rules" / "examples" / "articles"
ENTITIES = ("article", "current_user", "profile")
UNMODELED = ("/api/articles?search=rust", "/api/articles?tag=go&page=2", "/api/catalog?sortBy=secret:asc")


@pytest.fixture
async def conduit(pg_dsn: str, mongo_server: Any, mongo_db_name: str) -> AsyncIterator[tuple[LoadedDomain, str, str]]:
    loaded = await load_domain(pg_dsn, mongo_server.uri, mongo_db_name, scale=10, seed=11, drift=False,
                               articles=True)
    runner = web.AppRunner(create_app(mongo_server.uri, mongo_db_name))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield loaded, f"http://127.0.0.1:{runner.addresses[0][1]}", pg_dsn
    await runner.cleanup()


def shapes(family: Articles) -> list[str]:
    names = [writer["username"] for writer in family.writers]
    found = ["/api/articles", "/api/articles?limit=3&offset=2", "/api/articles?limit=0", "/api/articles?limit=x",
             "/api/articles?offset=-4", "/api/articles?author=nobody", f"/api/articles?author=%20{names[0].upper()}",
             "/api/articles?favorited=nobody", "/api/articles?tag=none", "/api/articles?author=",
             "/api/catalog", "/api/catalog?page=2&limit=4", "/api/catalog?page=0&limit=500", "/api/catalog?page=99",
             "/api/catalog?limit=7&pretty=1", "/api/catalog?sortBy=title:desc&limit=5&page=2",
             "/api/catalog?sortBy=createdAt:desc,title&limit=6", "/api/catalog?limit=x&page=y"]
    found += [f"/api/articles?tag={tag}" for tag in TAGS] + [f"/api/articles?tag={TAGS[0]}&author={names[1]}"]
    found += [f"/api/articles?author={name}" for name in names] + [f"/api/articles?favorited={name}" for name in names]
    found += [f"/api/articles/{a['slug']}" for a in family.articles] + ["/api/articles/POST-001"]
    found += [f"/api/profiles/{name}" for name in names] + [f"/api/profiles/{names[2].upper()}"]
    return found


def reads(family: Articles, readers: list[str]) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = [(path, reader) for path in shapes(family) for reader in (None, *readers)]
    found += [(path, reader) for reader in readers
              for path in ("/api/articles/feed", "/api/articles/feed?limit=2&offset=1", "/api/user")]
    return found


async def read_all(base: str, wanted: list[tuple[str, str | None]]) -> list[tuple[int, bytes]]:
    semaphore = asyncio.Semaphore(8)
    results: list[tuple[int, bytes]] = [(0, b"")] * len(wanted)
    async with aiohttp.ClientSession() as session:
        async def one(index: int, path: str, reader: str | None) -> None:
            headers = {"Authorization": f"Token {demo_token(reader)}"} if reader else {}
            async with semaphore, session.get(base + path, headers=headers) as response:
                results[index] = (response.status, await response.read())
        await asyncio.gather(*(one(index, path, reader) for index, (path, reader) in enumerate(wanted)))
    return results


async def through_the_sidecar(start: Any, pg_dsn: str, api: str, wanted: list[tuple[str, str | None]]) -> Any:
    sidecar = await start(upstream=api, rules=RULES, pg=pg_dsn, workers=2, source_timeout=5.0, recent_mismatches=10_000)
    direct = await read_all(api, wanted)
    assert {status for status, _ in direct} == {200}, Counter(status for status, _ in direct)
    assert await read_all(sidecar.proxy_url, wanted) == direct  # byte-transparent
    assert await sidecar.pipeline.drain(120)
    return sidecar


Finding = tuple[str, str, str, str, str]  # entity, route, key, query, path ("<extra>" for an extra row)


def findings(sidecar: Any, outcomes: tuple[str, ...] | None = None) -> set[Finding]:
    """What the sidecar's recent ring found (only `outcomes`, when given)."""
    found: set[Finding] = set()
    for entry in sidecar.sink.recent(limit=100_000):
        if outcomes is not None and entry.outcome not in outcomes:
            continue
        query = (entry.reason or "").removeprefix("list read ?").split(";")[0]
        if entry.outcome == "extra":
            found.add((entry.entity, entry.route, entry.key or "", query, "<extra>"))
        found |= {(entry.entity, entry.route, entry.key or "", query, diff.path) for diff in entry.diffs}
    return found


def missed(plants: Any, found: set[Finding]) -> list[tuple[str, Any]]:
    """The plants' expected findings that are not in `found`, as (plant kind, finding)."""
    def seen(entity: str, route: str, key: str, query: str | None, path: str) -> bool:
        return any(f[0] == entity and f[1] == route and (key == "<extra>" or f[2] == key)
                   and (query is None or f[3] == query) and f[4] == path for f in found)

    return [(plant.kind, finding) for plant in plants for finding in plant.findings if not seen(*finding)]


@pytest.mark.parametrize("engine", ["raw"])
async def test_clean_articles_under_every_query_shape_give_no_finding(conduit, start, probe) -> None:
    loaded, api, pg_dsn = conduit
    family = loaded.articles
    assert family is not None
    readers = [str(user["_id"]) for user in loaded.dataset.collections["users"][:3]]
    wanted = reads(family, readers)
    sidecar = await through_the_sidecar(start, pg_dsn, api, wanted + [(path, None) for path in UNMODELED])
    findings = [(e.outcome, e.route, e.key, e.reason, e.diffs) for e in sidecar.sink.recent(limit=100_000)]
    assert findings == [], findings[:5]
    counted: Counter[str] = Counter()
    for entity in ENTITIES:
        counted.update(sidecar.sink.counts.get(entity, {}))
    assert set(counted) == {"match", "skipped"}, counted
    assert counted["skipped"] == len(UNMODELED) == probe.skipped(sidecar, "unmodeled_query")
    assert counted["match"] > len(wanted)


@pytest.mark.parametrize("engine", ["raw"])
async def test_each_planted_article_divergence_is_found_at_its_path(conduit, start) -> None:
    loaded, api, pg_dsn = conduit
    family = loaded.articles
    assert family is not None
    connection = await asyncpg.connect(pg_dsn)
    try:
        plants = await plant_articles(connection, family, 11)
    finally:
        await connection.close()
    liked = next(p for p in plants if p.kind == "favorite")
    fan = next(query for _, _, _, query, _ in liked.findings if query and query.startswith("favorited="))
    fan_id = next(str(w["_id"]) for w in family.writers if w["username"] == fan.removeprefix("favorited="))
    follow = next(p for p in plants if p.kind == "follow")
    followee = next(key for entity, _, key, _, _ in follow.findings if entity == "profile")
    follower = _planted_follower(loaded, pg_dsn)
    readers = sorted({fan_id, await follower, str(loaded.dataset.collections["users"][0]["_id"])})
    sidecar = await through_the_sidecar(start, pg_dsn, api, reads(family, readers))
    found = findings(sidecar)
    missing = missed(plants, found)
    assert missing == [], (missing, sorted(found)[:60])
    assert followee  # (the profile read by the follower shows `following`)
    # the current user and the profiles no plant touched are clean
    assert not any(f[0] == "current_user" for f in found)
    assert not any(f[0] == "profile" and f[2] != followee for f in found)


async def _planted_follower(loaded: LoadedDomain, pg_dsn: str) -> str:
    """The user PostgreSQL says follows someone the API says they do not."""
    connection = await asyncpg.connect(pg_dsn)
    try:
        rows = await connection.fetch("SELECT m.legacy_object_id, e.legacy_object_id AS followee FROM follows f "
                                      "JOIN id_map m ON m.new_id = f.follower_id AND m.collection = 'users' "
                                      "JOIN id_map e ON e.new_id = f.followee_id AND e.collection = 'users'")
    finally:
        await connection.close()
    assert loaded.articles is not None
    api_follows = {(str(f["follower"]), str(f["followee"])) for f in loaded.articles.follows}
    [planted] = [row[0] for row in rows if (row[0], row["followee"]) not in api_follows]
    return str(planted)
