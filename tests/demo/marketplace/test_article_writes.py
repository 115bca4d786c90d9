"""The articles family's writes (favorite, follow, a new tag list): MongoDB at once,
PostgreSQL through the dual write later, in the order each row's writes were made; and
what the API answers to hostile requests."""
from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from shadow.demo.marketplace.api import create_app
from shadow.demo.marketplace.articledata import Articles
from shadow.demo.marketplace.backends import BACKENDS
from shadow.demo.marketplace.cli import load_domain
from shadow.demo.marketplace.dualwrite import DualWrite
from shadow.demo.marketplace.views import demo_token


class Lags:
    """Each write's lag in turn (then 0): a slow first write, fast later ones."""

    def __init__(self, *lags: float) -> None:
        self._lags: Iterator[float] = iter(lags)

    def __call__(self) -> float:
        return next(self._lags, 0.0)


@dataclass
class Conduit:
    base: str
    family: Articles
    pg: Any
    dual: DualWrite
    reader: str

    def headers(self, reader: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Token {demo_token(reader or self.reader)}"}


@pytest.fixture
async def conduit(pg_dsn: str, mongo_server: Any, mongo_db_name: str) -> AsyncIterator[Conduit]:
    loaded = await load_domain(pg_dsn, mongo_server.uri, mongo_db_name, scale=10, seed=11, drift=False,
                               articles=True)
    assert loaded.articles is not None
    app = create_app(mongo_server.uri, mongo_db_name, dual_write_dsn=pg_dsn, dual_write_lag=Lags(0.3))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    pg = await asyncpg.connect(pg_dsn)
    dual = app[BACKENDS].dual_write
    assert dual is not None
    reader = str(loaded.dataset.collections["users"][0]["_id"])
    yield Conduit(f"http://127.0.0.1:{runner.addresses[0][1]}", loaded.articles, pg, dual, reader)
    await pg.close()
    await runner.cleanup()


async def call(conduit: Conduit, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(method, conduit.base + path, **kwargs) as answer:
        return answer.status, await answer.json(content_type=None)


async def favorited_in_pg(conduit: Conduit, slug: str, user: str) -> bool:
    return bool(await conduit.pg.fetchval(
        "SELECT count(*) FROM article_favorites f JOIN articles a ON a.id = f.article_id "
        "JOIN id_map m ON m.new_id = f.user_id AND m.collection = 'users' "
        "WHERE a.slug = $1 AND m.legacy_object_id = $2", slug, user))


async def test_a_rows_writes_reach_postgres_in_the_order_they_were_made(conduit) -> None:
    """Favorite (its second leg 300 ms late), then unfavorite (at once): PostgreSQL ends
    unfavorited, as MongoDB does, though the second write's lag was the shorter."""
    article = next(a for a in conduit.family.articles if conduit.reader not in {str(u) for u in a["favoritedBy"]})
    slug, path = article["slug"], f"/api/articles/{article['slug']}/favorite"
    status, body = await call(conduit, "POST", path, headers=conduit.headers())
    assert status == 200 and body["article"]["favorited"] is True
    assert body["article"]["favoritesCount"] == len(article["favoritedBy"]) + 1
    assert not await favorited_in_pg(conduit, slug, conduit.reader)  # the second leg lags
    status, body = await call(conduit, "DELETE", path, headers=conduit.headers())
    assert status == 200 and body["article"]["favorited"] is False
    await conduit.dual.settled()
    assert conduit.dual.landed == 2
    assert not await favorited_in_pg(conduit, slug, conduit.reader)


async def test_follows_and_tag_lists_reach_postgres(conduit) -> None:
    writer = next(w for w in conduit.family.writers if str(w["_id"]) != conduit.reader
                  and (w["_id"], w["_id"]) not in {(f["follower"], f["followee"]) for f in conduit.family.follows})
    status, body = await call(conduit, "POST", f"/api/profiles/{writer['username'].upper()}/follow",
                              headers=conduit.headers())
    assert (status, body) == (200, {"profile": {"username": writer["username"], "following": True}})
    slug = conduit.family.articles[0]["slug"]
    status, body = await call(conduit, "PUT", f"/api/articles/{slug}", headers=conduit.headers(),
                              json={"article": {"tagList": ["tea", "go", "tea"]}})
    assert status == 200 and body["article"]["tagList"] == ["go", "tea"]
    await conduit.dual.settled()
    follows = await conduit.pg.fetchval(
        "SELECT count(*) FROM follows f JOIN id_map a ON a.new_id = f.follower_id JOIN id_map b ON "
        "b.new_id = f.followee_id WHERE a.legacy_object_id = $1 AND b.legacy_object_id = $2",
        conduit.reader, str(writer["_id"]))
    tags = await conduit.pg.fetchval("SELECT array_agg(tag ORDER BY tag) FROM article_tags t JOIN articles a "
                                     "ON a.id = t.article_id WHERE a.slug = $1", slug)
    assert (follows, tags) == (1, ["go", "tea"])
    status, body = await call(conduit, "DELETE", f"/api/profiles/{writer['username']}/follow",
                              headers=conduit.headers())
    assert (status, body["profile"]["following"]) == (200, False)
    status, body = await call(conduit, "GET", f"/api/profiles/{writer['username']}", headers=conduit.headers())
    assert body["profile"]["following"] is False


HOSTILE = {  # request -> (status, error): nginx has no say here, the Node backend's answers are the reference
    "no token": ("PUT", "/api/articles/{slug}", None, {"article": {"tagList": ["go"]}}, 401),
    "a token not ours": ("PUT", "/api/articles/{slug}", "Token a.b.c", {"article": {"tagList": ["go"]}}, 401),
    "body not JSON": ("PUT", "/api/articles/{slug}", "", b"{tagList", 400),
    "body a list": ("PUT", "/api/articles/{slug}", "", [], 400),
    "article a list": ("PUT", "/api/articles/{slug}", "", {"article": []}, 400),
    "tagList a string": ("PUT", "/api/articles/{slug}", "", {"article": {"tagList": "go"}}, 400),
    "a tag not a string": ("PUT", "/api/articles/{slug}", "", {"article": {"tagList": ["go", 7]}}, 400),
    "an empty tag": ("PUT", "/api/articles/{slug}", "", {"article": {"tagList": [""]}}, 400),
    "no tagList": ("PUT", "/api/articles/{slug}", "", {"article": {"title": "x"}}, 400),
    "unknown article": ("PUT", "/api/articles/no-such-post", "", {"article": {"tagList": ["go"]}}, 404),
    "favorite, no token": ("POST", "/api/articles/{slug}/favorite", None, None, 401),
    "favorite an unknown article": ("POST", "/api/articles/no-such-post/favorite", "", None, 404),
    "follow, no token": ("POST", "/api/profiles/nobody/follow", None, None, 401),
    "follow an unknown writer": ("DELETE", "/api/profiles/nobody/follow", "", None, 404),
}


@pytest.mark.parametrize("case", HOSTILE.values(), ids=HOSTILE.keys())
async def test_hostile_writes_change_nothing(conduit, case) -> None:
    method, path, authorization, body, expected = case
    slug = conduit.family.articles[0]["slug"]
    headers = {} if authorization is None else {"Authorization": authorization or conduit.headers()["Authorization"]}
    sent: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {} if body is None else {"json": body}
    status, answer = await call(conduit, method, path.format(slug=slug), headers=headers, **sent)
    assert status == expected and "error" in answer, (status, answer)
    await conduit.dual.settled()
    assert conduit.dual.landed == 0
    status, shown = await call(conduit, "GET", f"/api/articles/{slug}")
    assert shown["article"]["tagList"] == sorted(conduit.family.articles[0]["tagList"])
