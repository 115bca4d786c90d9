"""View-model rules (issue 12) against a real PostgreSQL: aggregates, per-reader fields,
lookups by a unique column, key normalizers, scalar lists, absent values, paths inside
json, and list selections under query parameters (filter, order, page, total)."""
from __future__ import annotations

import base64
import json
import textwrap
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shadow.compare.diff import compare
from shadow.model import Outcome
from shadow.replay.listcheck import check_list
from shadow.replay.sources.postgres import PostgresSource
from shadow.replay.viewread import BoundReader, Listing, bound_reader, jwt_claim
from shadow.rules import RuleSet, load_rules
from shadow.rules.spec import InvalidKey, RouteMatch

TODAY = date(2026, 11, 22)
SCHEMA = """
CREATE TABLE id_map (collection text NOT NULL, legacy_object_id text NOT NULL, new_id uuid NOT NULL UNIQUE,
                     PRIMARY KEY (collection, legacy_object_id));
CREATE TABLE users (id uuid PRIMARY KEY, legacy_object_id text NOT NULL UNIQUE, username text NOT NULL UNIQUE,
                    verified boolean NOT NULL DEFAULT false);
CREATE TABLE articles (id uuid PRIMARY KEY, legacy_object_id text NOT NULL UNIQUE, slug text NOT NULL UNIQUE,
                       author_id uuid NOT NULL, status text NOT NULL, score int NOT NULL, meta jsonb,
                       created_at timestamptz NOT NULL);
CREATE TABLE favorites (article_id uuid NOT NULL, user_id uuid NOT NULL, kind text NOT NULL DEFAULT 'like');
CREATE TABLE comments (id uuid PRIMARY KEY, legacy_object_id text NOT NULL UNIQUE, article_id uuid NOT NULL,
                       body text NOT NULL, votes int NOT NULL);
CREATE TABLE article_tags (article_id uuid NOT NULL, tag text NOT NULL);
"""
RULES = """\
entity: article
collection: articles
table: articles
fields:
  _id: legacy_object_id
  slug: slug
  status: status
  favoritesCount: {count: favorites, fk: article_id}
  likes: {count: favorites, fk: article_id, where: {kind: like}}
  votes: {sum: comments, fk: article_id, of: votes}
  commented: {exists: comments, fk: article_id}
  favorited: {exists: favorites, where: {article_id: key, user_id: reader}}
  isMine: {exists: articles, where: {id: key, author_id: reader}}
  meta: {json: meta, paths: {'chain.at': timestamp, 'fees[*].amount': decimal}}
routes:
  - route: GET /api/articles/{id}
    reader: {header: Authorization, jwt_claim: id, to: users}
  - route: GET /api/articles
    list: true
    at: data
    complete: true
    reader: {header: Authorization, jwt_claim: id, to: users}
    where:
      author_id: {query: author, to: users, by: username}
      status: {query: status, op: in}
      score: {query: minScore, op: gte}
    order_by: [score desc, slug]
    limit: {query: limit, default: 3}
    offset: offset
    total: count
---
entity: comment
collection: comments
table: comments
fields:
  _id: legacy_object_id
  body: body
routes:
  - route: GET /api/articles/{slug}/comments
    list: true
    at: comments
    complete: true
    where: {article_id: {param: slug, to: articles, by: slug}}
---
entity: profile
collection: users
table: users
key: username
key_type: string
id_field: username
fields:
  username: username
  verified: {column: verified, absent: false}
routes:
  - route: GET /api/profiles/{username}
    key: {path: username, normalize: lower}
---
entity: tags
collection: articles
table: article_tags
distinct: tag
routes:
  - route: GET /api/tags
    at: tags
    key: {const: all}
"""


def oid(number: int) -> str:
    return f"{number:024x}"


def token(claims: dict[str, Any]) -> str:
    """An unsigned-looking HS256 JWT (the signature is never checked: claims are read)."""
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"Bearer {part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


@pytest.fixture
def rules(tmp_path: Path) -> RuleSet:
    (tmp_path / "articles.yaml").write_text(textwrap.dedent(RULES))
    return load_rules(tmp_path)


class World:
    def __init__(self) -> None:
        self.users = {name: uuid.uuid4() for name in ("alice", "bob")}
        self.articles: dict[str, uuid.UUID] = {}


async def seed(dsn: str) -> World:
    world = World()
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(SCHEMA)
        for number, (name, new_id) in enumerate(world.users.items(), 1):
            await connection.execute("INSERT INTO users VALUES ($1, $2, $3, $4)", new_id, oid(number), name, name == "bob")
            await connection.execute("INSERT INTO id_map VALUES ('users', $1, $2)", oid(number), new_id)
        for number in range(6):
            new_id, slug = uuid.uuid4(), f"post-{number}"
            world.articles[slug] = new_id
            author = world.users["alice" if number % 2 == 0 else "bob"]
            await connection.execute(
                "INSERT INTO articles VALUES ($1, $2, $3, $4, $5, $6, $7, now())", new_id, oid(100 + number), slug,
                author, "draft" if number == 5 else "published", 10 * number,
                json.dumps({"chain": {"at": "2026-01-02T03:04:05.678000+00:00"}, "fees": [{"amount": "1.50"}]}))
            await connection.execute("INSERT INTO article_tags VALUES ($1, $2), ($1, 'all')", new_id, f"t{number % 2}")
        post0 = world.articles["post-0"]
        await connection.executemany("INSERT INTO favorites VALUES ($1, $2, $3)",
                                     [(post0, world.users["alice"], "like"), (post0, world.users["bob"], "star")])
        await connection.executemany("INSERT INTO comments VALUES ($1, $2, $3, $4, $5)",
                                     [(uuid.uuid4(), oid(500), post0, "first", 3), (uuid.uuid4(), oid(501), post0, "second", 4)])
    finally:
        await connection.close()
    return world


def article_control(number: int, **changes: Any) -> dict[str, Any]:
    document = {"_id": oid(100 + number), "slug": f"post-{number}", "status": "draft" if number == 5 else "published",
                "favoritesCount": 0, "likes": 0, "votes": 0, "commented": False, "favorited": False, "isMine": False,
                "meta": {"chain": {"at": 1767323045678}, "fees": [{"amount": 1.5}]}}
    if number == 0:
        document |= {"favoritesCount": 2, "likes": 1, "votes": 7, "commented": True}
    return document | changes


async def test_aggregates_and_reader_bound_fields_rebuild_per_reader(pg_dsn: str, rules: RuleSet) -> None:
    world = await seed(pg_dsn)
    entity = rules.entities["article"]
    source = await PostgresSource.create(pg_dsn)
    try:
        lookup = rules.route_named("GET /api/articles/{id}").reader.lookup  # type: ignore[union-attr]
        alice = BoundReader(oid(1), lookup)
        keys = [oid(100), oid(101)]
        as_alice = await source.fetch(entity, keys, alice)
        assert as_alice[oid(100)]["favoritesCount"] == 2 and as_alice[oid(100)]["likes"] == 1
        assert as_alice[oid(100)]["votes"] == 7 and as_alice[oid(100)]["commented"] is True
        assert as_alice[oid(100)]["favorited"] is True and as_alice[oid(100)]["isMine"] is True
        assert as_alice[oid(101)]["favorited"] is False and as_alice[oid(101)]["isMine"] is False
        # the same articles read by bob, by nobody, by a reader PostgreSQL does not know
        as_bob = await source.fetch(entity, keys, BoundReader(oid(2), lookup))
        assert as_bob[oid(100)]["favorited"] is True and as_bob[oid(100)]["isMine"] is False
        assert as_bob[oid(101)]["isMine"] is True
        for reader in (None, BoundReader(oid(99), lookup)):
            anonymous = await source.fetch(entity, keys, reader)
            assert anonymous[oid(100)]["favorited"] is False and anonymous[oid(101)]["isMine"] is False
        control = article_control(0, favorited=True, isMine=True)
        assert compare(entity, control, as_alice[oid(100)], TODAY).outcome is Outcome.MATCH
        # drift: one favorite row lost in PostgreSQL -> the count and the reader's flag
        writer = await asyncpg.connect(pg_dsn)
        await writer.execute("DELETE FROM favorites WHERE user_id = $1", world.users["alice"])
        await writer.close()
        drifted = (await source.fetch(entity, [oid(100)], alice))[oid(100)]
        verdict = compare(entity, control, drifted, TODAY)
        assert {diff.path for diff in verdict.diffs} == {"favoritesCount", "likes", "favorited"}
    finally:
        await source.close()


def test_jwt_claims_are_read_never_trusted_for_more_than_the_rebuild() -> None:
    good = token({"id": oid(1), "name": "alice"})
    assert jwt_claim(good, "id") == oid(1)
    assert jwt_claim(good.removeprefix("Bearer "), "id") == oid(1)
    assert jwt_claim(token({"id": 42}), "id") == "42"
    hostile = {
        "no header": None, "empty": "", "not a jwt": "Bearer abc", "two parts": "Bearer a.b",
        "payload not base64": "Bearer a.!!!.c", "payload not json": f"Bearer a.{base64.urlsafe_b64encode(b'{x').decode()}.c",
        "payload a list": token({}).replace(token({}).split(".")[1], base64.urlsafe_b64encode(b"[1]").decode()),
        "claim missing": token({"sub": "x"}), "claim an object": token({"id": {"$ne": 1}}),
        "claim a bool": token({"id": True}), "claim empty": token({"id": ""}), "claim with NUL": token({"id": "a\x00b"}),
        "claim too long": token({"id": "x" * 500}), "token too long": "Bearer " + "a." * 5000 + "b",
        "too many parts": "Bearer a.b.c.d",
    }
    for name, value in hostile.items():
        assert jwt_claim(value, "id") is None, name
    reader = bound_reader(None, {"Authorization": good})
    assert reader is None
    assert "alice" not in repr(BoundReader(oid(1), None))  # type: ignore[arg-type]
    assert oid(1) not in repr(BoundReader(oid(1), None))  # type: ignore[arg-type]


async def test_lookups_by_a_unique_column_and_key_normalizers(pg_dsn: str, rules: RuleSet) -> None:
    world = await seed(pg_dsn)
    source = await PostgresSource.create(pg_dsn)
    try:
        comments = rules.route_named("GET /api/articles/{slug}/comments")
        assert comments is not None
        selection = await source.select(rules.entities["comment"], comments, {"slug": "post-0"}, {})
        assert set(selection.keys) == {oid(500), oid(501)}
        assert (await source.select(rules.entities["comment"], comments, {"slug": "nope"}, {})).keys == ()
        profile = rules.route_named("GET /api/profiles/{username}")
        assert profile is not None
        controls = profile.controls(RouteMatch(profile, {"username": "ALICE"}), {}, {}, {"username": "alice"})
        assert list(controls) == ["alice"]
        found = await source.fetch(rules.entities["profile"], list(controls))
        assert found["alice"] is not None
        with pytest.raises(InvalidKey):  # normalized, then validated as always
            profile.controls(RouteMatch(profile, {"username": " \x00 "}), {}, {}, {"username": "x"})
        assert world.articles
    finally:
        await source.close()


async def test_absent_means_the_column_default_on_both_sides(pg_dsn: str, rules: RuleSet) -> None:
    await seed(pg_dsn)
    entity = rules.entities["profile"]
    source = await PostgresSource.create(pg_dsn)
    try:
        found = await source.fetch(entity, ["alice", "bob"])
    finally:
        await source.close()
    assert compare(entity, {"username": "alice"}, found["alice"], TODAY).outcome is Outcome.MATCH  # old document
    assert compare(entity, {"username": "alice", "verified": None}, found["alice"], TODAY).outcome is Outcome.MATCH
    verdict = compare(entity, {"username": "bob"}, found["bob"], TODAY)  # absent = false, PG says true
    assert [diff.path for diff in verdict.diffs] == ["verified"]
    assert compare(entity, {"username": "bob", "verified": True}, found["bob"], TODAY).outcome is Outcome.MATCH


async def test_paths_inside_a_json_column_are_normalized(pg_dsn: str, rules: RuleSet) -> None:
    await seed(pg_dsn)
    entity = rules.entities["article"]
    source = await PostgresSource.create(pg_dsn)
    try:
        found = (await source.fetch(entity, [oid(101)]))[oid(101)]
    finally:
        await source.close()
    assert compare(entity, article_control(1), found, TODAY).outcome is Outcome.MATCH
    late = article_control(1, meta={"chain": {"at": "2026-01-02T03:04:06.678Z"}, "fees": [{"amount": "1.5"}]})
    assert [diff.path for diff in compare(entity, late, found, TODAY).diffs] == ["meta.chain.at"]


async def test_scalar_list_route_with_a_constant_key(pg_dsn: str, rules: RuleSet) -> None:
    await seed(pg_dsn)
    entity = rules.entities["tags"]
    route = rules.route_named("GET /api/tags")
    assert route is not None
    controls = route.controls(RouteMatch(route, {}), {}, {}, {"tags": ["t1", "all", "t0"]})
    assert list(controls) == ["all"]
    source = await PostgresSource.create(pg_dsn)
    try:
        found = await source.fetch(entity, ["all"])
    finally:
        await source.close()
    assert compare(entity, controls["all"], found["all"], TODAY).outcome is Outcome.MATCH
    verdict = compare(entity, ["t1", "all", "t0", "t9"], found["all"], TODAY)
    assert verdict.outcome is Outcome.MISMATCH and [diff.kind for diff in verdict.diffs] == ["missing_in_candidate"]
    short = compare(entity, ["t1", "all", "a0"], found["all"], TODAY)  # "t0" missing in the API, "a0" too many
    assert sorted((diff.kind, diff.control, diff.candidate) for diff in short.diffs) == [
        ("extra_in_candidate", None, "t0"), ("missing_in_candidate", "a0", None)]


def listing(keys: list[str], total: Any, **query: Any) -> Listing:
    return Listing(tuple(keys), total, {name: [str(value)] for name, value in query.items()})


async def test_list_selection_under_query_parameters_order_page_and_total(pg_dsn: str, rules: RuleSet) -> None:
    await seed(pg_dsn)
    entity, route = rules.entities["article"], rules.route_named("GET /api/articles")
    assert route is not None
    source = await PostgresSource.create(pg_dsn)
    try:
        async def select(**query: Any) -> Any:
            return await source.select(entity, route, {}, {name: [str(value)] for name, value in query.items()})

        everything = await select(limit=10)  # score desc
        assert everything.keys == tuple(oid(100 + n) for n in (5, 4, 3, 2, 1, 0)) and everything.total == 6
        assert (await select()).keys == tuple(oid(100 + n) for n in (5, 4, 3))  # default limit 3
        page = await select(limit=2, offset=1, status="published")
        assert page.keys == (oid(103), oid(102)) and page.total == 5
        assert (await select(status="draft,published", minScore=30)).keys == (oid(105), oid(104), oid(103))
        by_author = await select(author="bob", limit=10)
        assert by_author.keys == (oid(105), oid(103), oid(101)) and by_author.total == 3
        nobody = await select(author="carol")
        assert nobody.keys == () and nobody.total == 0
        with pytest.raises(asyncpg.DataError):  # a value PostgreSQL cannot read: an error, never a guess
            await select(minScore="not a number")
    finally:
        await source.close()
    # the API's page against PostgreSQL's
    selected, total = (oid(104), oid(103)), 5
    same = check_list(route, listing([oid(104), oid(103)], 5), selected, total)
    assert same.diffs == () and same.extra == ()
    reversed_ = check_list(route, listing([oid(103), oid(104)], 5), selected, total)
    assert [(diff.path, diff.kind) for diff in reversed_.diffs] == [("data[*]", "order")]
    duplicated = check_list(route, listing([oid(104), oid(104), oid(103)], 5), selected, total)
    assert [(diff.path, diff.kind, diff.at) for diff in duplicated.diffs] == [("data[*]", "duplicate", "data[1]")]
    stranger = check_list(route, listing([oid(104), oid(100)], 5), selected, total)
    assert [(diff.path, diff.kind) for diff in stranger.diffs] == [("data[*]", "missing_in_candidate")]
    assert stranger.unselected == {oid(100)} and stranger.extra == (oid(103),)
    wrong_total = check_list(route, listing([oid(104), oid(103)], 6), selected, total)
    assert [(diff.path, diff.kind) for diff in wrong_total.diffs] == [("count", "changed")]
    empty = check_list(route, listing([], 0), selected, total)
    assert empty.extra == selected
