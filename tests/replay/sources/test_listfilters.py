"""List filters of issue 20 against a real PostgreSQL, on the articles-like schema of
test_viewmodel.py: filters through junction tables (EXISTS), lookups that drop their
condition on a miss, normalized parameters, a feed bound to the reader's follows, page
numbers with a page count, a sort parameter through an allow-list, out-of-range page
values, and a route key taken from the token."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shadow.replay.listcheck import check_list
from shadow.replay.listquery import Unmodeled, unmodeled
from shadow.replay.sources.postgres import PostgresSource
from shadow.replay.viewread import BoundReader, Listing, bound_reader, jwt_claim
from shadow.rules import RuleSet, load_rules
from shadow.rules.spec import InvalidKey, RouteMatch
from tests.replay.sources.test_viewmodel import oid, seed, token

RULES = """\
entity: article
collection: articles
table: articles
fields:
  _id: legacy_object_id
  slug: slug
routes:
  - route: GET /api/articles
    list: true
    at: articles
    complete: true
    where:
      author_id: {query: author, to: users, by: username, on_miss: drop, normalize: [trim, lower]}
      tag: {query: tag, through: article_tags, fk: article_id}
      user_id: {query: favorited, through: favorites, fk: article_id, to: users, by: username}
    order_by: [created_at desc, slug]
    limit: {query: limit, default: 20, min: 1, max: 50, out_of_range: default}
    offset: offset
    total: articlesCount
    query: [fields]
  - route: GET /api/articles/feed
    list: true
    at: articles
    complete: true
    reader: {header: Authorization, jwt_claim: id, to: users}
    where:
      author_id: {reader: {in: follows, select: followee_id, by: follower_id}}
    order_by: [created_at desc, slug]
    limit: {query: limit, default: 20}
    offset: offset
    total: articlesCount
  - route: GET /api/my/articles
    list: true
    at: articles
    complete: true
    reader: {header: Authorization, jwt_claim: id, to: users, scheme: [Token]}
    where: {author_id: {reader: true}}
  - route: GET /api/pages/articles
    list: true
    at: results
    where: {status: {query: status}}
    sort: {query: sortBy, allow: {score: score, slug: slug}}
    order_by: [slug]
    limit: {query: limit, default: 2, min: 1, max: 4, out_of_range: clamp}
    page: {query: page, out_of_range: error}
    total: totalResults
    pages: totalPages
  - route: GET /api/dashed/articles
    list: true
    at: results
    sort: {query: sort, allow: {score: score, slug: slug}, style: -field}
    order_by: [slug]
---
entity: current_user
collection: users
table: users
fields:
  _id: legacy_object_id
  username: username
routes:
  - route: GET /api/user
    at: user
    key: {jwt_claim: id}
    reader: {header: Authorization, jwt_claim: id, to: users}
"""


@pytest.fixture
def rules(tmp_path: Path) -> RuleSet:
    (tmp_path / "articles.yaml").write_text(textwrap.dedent(RULES))
    return load_rules(tmp_path)


def q(**query: Any) -> dict[str, list[str]]:
    return {name: [str(value)] for name, value in query.items()}


def posts(*numbers: int) -> tuple[str, ...]:
    return tuple(oid(100 + number) for number in numbers)


async def test_filters_through_junction_tables_lookups_and_normalizers(pg_dsn: str, rules: RuleSet) -> None:
    world = await seed(pg_dsn)  # post-n by alice (even n) or bob (odd n); tags t<n%2> and all; alice+bob favor post-0
    entity, route = rules.entities["article"], rules.route_named("GET /api/articles")
    assert route is not None
    source = await PostgresSource.create(pg_dsn)
    try:
        async def select(**query: Any) -> Any:
            return await source.select(entity, route, {}, q(**query))

        tagged = await select(tag="t1")
        assert tagged.keys == posts(5, 3, 1) and tagged.total == 3
        assert (await select(tag="all")).keys == posts(5, 4, 3, 2, 1, 0)  # EXISTS: each article once
        assert (await select(tag="nope")).keys == ()
        assert (await select(favorited="alice")).keys == posts(0)
        assert (await select(favorited="carol")).keys == ()  # on_miss: empty (the default)
        by_author = await select(author="  ALICE ")  # the API lower-cases and trims the name
        assert by_author.keys == posts(4, 2, 0) and by_author.selected_by[0][:2] == ("author_id", "eq")
        assert (await select(author="nobody")).keys == posts(5, 4, 3, 2, 1, 0)  # on_miss: drop
        assert (await select(author="bob", tag="t0")).keys == ()
        # limit out of [1, 50] -> the API's default (20), not LIMIT 0
        assert (await select(limit=0)).keys == posts(5, 4, 3, 2, 1, 0)
        assert (await select(limit=-3)).keys == posts(5, 4, 3, 2, 1, 0)
        assert (await select(limit=2, offset=1)).keys == posts(4, 3)
        # the reader's follows
        connection = await asyncpg.connect(pg_dsn)
        try:
            await connection.execute("CREATE TABLE follows (follower_id uuid NOT NULL, followee_id uuid NOT NULL)")
            await connection.execute("INSERT INTO follows VALUES ($1, $2)", world.users["alice"], world.users["bob"])
        finally:
            await connection.close()
        feed = rules.route_named("GET /api/articles/feed")
        assert feed is not None and feed.reader is not None
        alice = bound_reader(feed.reader, {"Authorization": token({"id": oid(1)})})
        shown = await source.select(entity, feed, {}, {}, alice)
        assert shown.keys == posts(5, 3, 1) and shown.total == 3
        assert (await source.select(entity, feed, {}, {}, BoundReader(oid(2), feed.reader.lookup))).keys == ()
        assert (await source.select(entity, feed, {}, {}, None)).keys == ()  # nobody follows nobody
        mine = rules.route_named("GET /api/my/articles")
        assert mine is not None and mine.reader is not None
        as_bob = bound_reader(mine.reader, {"Authorization": "Token " + token({"id": oid(2)}).split(" ")[1]})
        assert (await source.select(entity, mine, {}, {}, as_bob)).keys == posts(1, 3, 5)
        assert bound_reader(mine.reader, {"Authorization": token({"id": oid(2)})}) is None  # Bearer not accepted here
    finally:
        await source.close()


async def test_page_numbers_page_counts_and_sort_parameters(pg_dsn: str, rules: RuleSet) -> None:
    await seed(pg_dsn)  # scores 0, 10, ..., 50; post-5 is the only draft
    entity, route = rules.entities["article"], rules.route_named("GET /api/pages/articles")
    dashed = rules.route_named("GET /api/dashed/articles")
    assert route is not None and dashed is not None
    source = await PostgresSource.create(pg_dsn)
    try:
        async def select(**query: Any) -> Any:
            return await source.select(entity, route, {}, q(**query))

        first = await select()
        assert first.keys == posts(0, 1) and (first.total, first.pages) == (6, 3)
        second = await select(page=2, sortBy="score:desc")
        assert second.keys == posts(3, 2) and second.pages == 3
        assert (await select(page=2, limit=99, sortBy="score:desc")).keys == posts(1, 0)  # limit clamped to 4
        assert (await select(page=1, limit=4, status="published")).pages == 2
        assert (await select(sortBy="slug:desc,score")).keys == posts(5, 4)
        for bad in ({"page": "0"}, {"page": "x"}, {"sortBy": "secret:desc"}, {"sortBy": "score:sideways"}):
            with pytest.raises(Unmodeled):
                await select(**bad)
        assert (await source.select(entity, dashed, {}, q(sort="-score"))).keys == posts(5, 4, 3, 2, 1, 0)
        assert (await source.select(entity, dashed, {}, q(sort="score"))).keys == posts(0, 1, 2, 3, 4, 5)
    finally:
        await source.close()
    listing = Listing(posts(3, 2), 6, q(page=2), pages=4)
    checked = check_list(route, listing, posts(3, 2), 6, 3)
    assert [(diff.path, diff.control, diff.candidate) for diff in checked.diffs] == [("totalPages", 4, 3)]
    echoed = Listing(posts(3, 2), 6, q(page=0, limit=500), pages=3, echoed={"page": 0, "limit": 4})
    wrong_echo = check_list(route, echoed, posts(3, 2), 6, 3, {"page": 1, "limit": 4})  # the API clamps page 0 to 1
    assert [(diff.path, diff.control, diff.candidate) for diff in wrong_echo.diffs] == [("page", 0, 1)]


def test_which_query_parameters_a_route_models(rules: RuleSet) -> None:
    route = rules.route_named("GET /api/articles")
    pages = rules.route_named("GET /api/pages/articles")
    assert route is not None and pages is not None
    assert route.query == {"author", "tag", "favorited", "limit", "offset", "fields"}
    assert pages.query == {"status", "sortBy", "limit", "page"}
    assert unmodeled(route, q(tag="x", fields="slug", limit=2)) == ()
    assert unmodeled(route, q(tag="x", search="y", Page=1)) == ("Page", "search")  # names are case-sensitive


def test_a_route_key_from_the_token(rules: RuleSet) -> None:
    route = rules.route_named("GET /api/user")
    assert route is not None
    body = {"user": {"_id": oid(1), "username": "alice"}}
    controls = route.controls(RouteMatch(route, {}), {}, {"Authorization": token({"id": oid(1)})}, body)
    assert list(controls) == [oid(1)]
    for headers in ({}, {"Authorization": "Bearer x"}, {"Authorization": token({"id": "not an id"})},
                    {"Authorization": token({"sub": oid(1)})}):
        with pytest.raises(InvalidKey):
            route.controls(RouteMatch(route, {}), {}, headers, body)


def test_reader_schemes_are_explicit() -> None:
    jwt = token({"id": oid(1)}).split(" ")[1]
    default = ("bearer", "token", "")
    for header in (f"Bearer {jwt}", f"bearer   {jwt}", f"Token {jwt}", f"TOKEN {jwt}", jwt, f"  {jwt}  "):
        assert jwt_claim(header, "id", default) == oid(1), header
    for header in (f"Basic {jwt}", f"JWT {jwt}", f"Bearer Bearer {jwt}", f"Bearer {jwt} extra"):
        assert jwt_claim(header, "id", default) is None, header
    assert jwt_claim(f"Token {jwt}", "id", ("bearer",)) is None
    assert jwt_claim(jwt, "id", ("bearer",)) is None  # bare not allowed
    assert jwt_claim(f"JWT {jwt}", "id", ("jwt",)) == oid(1)
