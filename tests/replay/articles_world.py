"""An articles-like API in the manner of the RealWorld "Conduit" app (issue 20), for
tests through the whole sidecar: tags through a junction table, favorites, follows, a
feed of followed authors, the current user from the token, list filters by tag,
favoriter and author (an unknown author drops the filter), a catalog with page numbers
and a sort parameter. Its answers are computed per read from in-memory data (the
control); PostgreSQL holds the same data remodeled (the candidate)."""
from __future__ import annotations

import base64
import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import web

USERS = ("alice", "bob", "carol", "dave")
TAGS = ("dragons", "go", "rust", "tea")
SCHEMA = """
CREATE TABLE users (id uuid PRIMARY KEY, legacy_object_id text NOT NULL UNIQUE, username text NOT NULL UNIQUE,
                    email text NOT NULL);
CREATE TABLE articles (id uuid PRIMARY KEY, slug text NOT NULL UNIQUE, title text NOT NULL,
                       author_id uuid NOT NULL REFERENCES users, created_at timestamptz NOT NULL);
CREATE TABLE article_tags (article_id uuid NOT NULL REFERENCES articles, tag text NOT NULL);
CREATE TABLE favorites (article_id uuid NOT NULL REFERENCES articles, user_id uuid NOT NULL REFERENCES users);
CREATE TABLE follows (follower_id uuid NOT NULL REFERENCES users, followee_id uuid NOT NULL REFERENCES users);
"""
RULES = """\
entity: article
collection: articles
table: articles
key: slug
key_type: string
id_field: slug
view: true
fields:
  slug: slug
  title: title
  createdAt: {column: created_at, as: timestamp}
  tagList: {rows: article_tags, fk: article_id, order_by: tag, value: tag}
  favoritesCount: {count: favorites, fk: article_id}
  favorited: {exists: favorites, where: {article_id: key, user_id: reader}}
  author:
    child: users
    fk: id
    parent: author_id
    fields:
      username: username
      following: {exists: follows, where: {followee_id: key, follower_id: reader}}   # key: the author's id
routes:
  - route: GET /api/articles
    list: true
    at: articles
    complete: true
    reader: {header: Authorization, jwt_claim: id, to: users, by: legacy_object_id, scheme: [Token]}
    recheck: {after: [100ms, 200ms], headers: [authorization]}
    where:
      author_id: {query: author, to: users, by: username, normalize: [trim, lower], on_miss: drop}  # ?author=nobody: every article
      tag: {query: tag, through: article_tags, fk: article_id}       # EXISTS over the junction table
      user_id: {query: favorited, through: favorites, fk: article_id, to: users, by: username}  # the far side's lookup
    order_by: [created_at desc, slug]
    limit: {query: limit, default: 20, min: 1, max: 100, out_of_range: default}
    offset: offset
    total: articlesCount
  - route: GET /api/articles/feed
    list: true
    at: articles
    complete: true
    reader: {header: Authorization, jwt_claim: id, to: users, by: legacy_object_id, scheme: [Token]}
    recheck: {after: [100ms, 200ms], headers: [authorization]}
    where:
      author_id: {reader: {in: follows, select: followee_id, by: follower_id}}  # authors the reader follows
    order_by: [created_at desc, slug]
    limit: {query: limit, default: 20, min: 1, max: 100, out_of_range: default}
    offset: offset
    total: articlesCount
  - route: GET /api/catalog
    list: true
    at: results
    complete: true
    reader: {header: Authorization, jwt_claim: id, to: users, by: legacy_object_id, scheme: [Token]}
    recheck: {after: [100ms, 200ms], headers: [authorization]}
    sort: {query: sortBy, allow: {title: title, createdAt: created_at}}
    order_by: [slug]
    limit: {query: limit, default: 10, min: 1, max: 100, out_of_range: clamp, at: limit}  # ?limit=500 -> 100
    page: {query: page, out_of_range: clamp, at: page}   # page numbers from 1; the body echoes both
    total: totalResults
    pages: totalPages
    query: [pretty]                              # modeled, changes no row; any other parameter: not list-checked
  - route: GET /api/articles/{slug}
    at: article
    key: {path: slug, normalize: lower}
    reader: {header: Authorization, jwt_claim: id, to: users, by: legacy_object_id, scheme: [Token]}
---
entity: current_user
collection: users
table: users
fields:
  _id: legacy_object_id
  username: username
  email: email
routes:
  - route: GET /api/user
    at: user
    key: {jwt_claim: id}                         # the reader's own record
    reader: {header: Authorization, jwt_claim: id, to: users, by: legacy_object_id, scheme: [Token]}
---
entity: profile
collection: users
table: users
key: username
key_type: string
id_field: username
view: true
fields:
  username: username
  following: {exists: follows, where: {followee_id: key, follower_id: reader}}
routes:
  - route: GET /api/profiles/{username}
    at: profile
    key: {path: username, normalize: lower}
    reader: {header: Authorization, jwt_claim: id, to: users, by: legacy_object_id, scheme: [Token]}
"""


def oid(number: int) -> str:
    return f"{number:024x}"


def token(user: str) -> str:
    """`Token <jwt>` as RealWorld sends it (claim `id`: the user's Mongo id); the API checks it."""
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"Token {part({'alg': 'HS256'})}.{part({'id': oid(USERS.index(user) + 1)})}.c2ln"


@dataclass
class Article:
    slug: str
    title: str
    author: str
    tags: set[str]
    created: datetime
    favorited_by: set[str] = field(default_factory=set)


@dataclass
class ArticlesWorld:
    """The API's data (the control) and the PostgreSQL copy (the candidate)."""

    pg_dsn: str
    articles: dict[str, Article] = field(default_factory=dict)
    follows: set[tuple[str, str]] = field(default_factory=set)  # (follower, followee)
    ids: dict[str, uuid.UUID] = field(default_factory=dict)  # username / slug -> PG id
    api_url: str = ""

    async def sql(self, statement: str, *args: Any) -> None:
        connection = await asyncpg.connect(self.pg_dsn)
        try:
            await connection.execute(statement, *args)
        finally:
            await connection.close()


def build(pg_dsn: str) -> ArticlesWorld:
    world = ArticlesWorld(pg_dsn)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    for number in range(14):
        author = USERS[number % 3]  # dave writes nothing
        tags = {TAGS[number % 4], TAGS[(number * 3 + 1) % 4]}
        favorited = {user for index, user in enumerate(USERS) if (number + index) % 3 == 0}
        world.articles[f"post-{number:02d}"] = Article(f"post-{number:02d}", f"Title {(number * 7) % 5} {number}",
                                                       author, tags, start + timedelta(hours=number * 5, milliseconds=number),
                                                       favorited)
    world.follows = {("alice", "bob"), ("alice", "carol"), ("bob", "alice"), ("carol", "carol")}
    return world


async def load(world: ArticlesWorld) -> None:
    connection = await asyncpg.connect(world.pg_dsn)
    try:
        await connection.execute(SCHEMA)
        for number, user in enumerate(USERS, 1):
            world.ids[user] = uuid.uuid4()
            await connection.execute("INSERT INTO users VALUES ($1, $2, $3, $4)", world.ids[user], oid(number), user,
                                     f"{user}@example.com")
        for article in world.articles.values():
            world.ids[article.slug] = uuid.uuid4()
            await connection.execute("INSERT INTO articles VALUES ($1, $2, $3, $4, $5)", world.ids[article.slug],
                                     article.slug, article.title, world.ids[article.author], article.created)
            await connection.executemany("INSERT INTO article_tags VALUES ($1, $2)",
                                         [(world.ids[article.slug], tag) for tag in sorted(article.tags)])
            await connection.executemany("INSERT INTO favorites VALUES ($1, $2)",
                                         [(world.ids[article.slug], world.ids[user]) for user in article.favorited_by])
        await connection.executemany("INSERT INTO follows VALUES ($1, $2)",
                                     [(world.ids[a], world.ids[b]) for a, b in world.follows])
    finally:
        await connection.close()


def _reader(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, jwt = header.partition(" ")
    try:
        if scheme != "Token":
            raise ValueError("RealWorld takes `Token <jwt>`")
        payload = jwt.split(".")[1]
        claim = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["id"]
        return USERS[int(claim, 16) - 1]
    except (ValueError, KeyError, IndexError) as problem:
        raise web.HTTPUnauthorized(text=str(problem)) from None


def _whole(raw: str | None, default: int) -> int | None:
    try:
        return default if raw is None else int(raw)
    except ValueError:
        return None


def app(world: ArticlesWorld) -> web.Application:
    def view(article: Article, reader: str | None) -> dict[str, Any]:
        return {"slug": article.slug, "title": article.title, "tagList": sorted(article.tags),
                "createdAt": article.created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "favorited": reader in article.favorited_by, "favoritesCount": len(article.favorited_by),
                "author": {"username": article.author, "following": (reader, article.author) in world.follows}}

    def newest(chosen: list[Article]) -> list[Article]:
        return sorted(sorted(chosen, key=lambda a: a.slug), key=lambda a: a.created, reverse=True)

    def page(request: web.Request, chosen: list[Article], reader: str | None) -> web.Response:
        limit = _whole(request.query.get("limit"), 20)
        limit = 20 if limit is None or not 1 <= limit <= 100 else limit
        offset = max(0, _whole(request.query.get("offset"), 0) or 0)
        shown = newest(chosen)[offset:offset + limit]
        return web.json_response({"articles": [view(a, reader) for a in shown], "articlesCount": len(chosen)})

    async def articles(request: web.Request) -> web.Response:
        reader = _reader(request)
        chosen = list(world.articles.values())
        author = request.query.get("author", "").strip().lower()
        if author in USERS:  # an unknown author drops the filter (as the API's lookup does)
            chosen = [a for a in chosen if a.author == author]
        if "tag" in request.query:
            chosen = [a for a in chosen if request.query["tag"] in a.tags]
        if "favorited" in request.query:
            chosen = [a for a in chosen if request.query["favorited"] in a.favorited_by]
        return page(request, chosen, reader)

    async def feed(request: web.Request) -> web.Response:
        reader = _reader(request)
        if reader is None:
            raise web.HTTPUnauthorized()
        return page(request, [a for a in world.articles.values() if (reader, a.author) in world.follows], reader)

    async def catalog(request: web.Request) -> web.Response:
        reader = _reader(request)
        limit = _whole(request.query.get("limit"), 10)
        limit = 10 if limit is None else max(1, min(100, limit))
        number = max(1, _whole(request.query.get("page"), 1) or 1)
        chosen = sorted(world.articles.values(), key=lambda a: a.slug)
        for item in reversed([part for part in request.query.get("sortBy", "").split(",") if part]):
            name, _, direction = item.partition(":")
            key: Callable[[Article], Any] = (lambda a: a.title) if name == "title" else (lambda a: a.created)
            chosen.sort(key=key, reverse=direction == "desc")
        shown = chosen[(number - 1) * limit:number * limit]
        return web.json_response({"results": [view(a, reader) for a in shown], "page": number, "limit": limit,
                                  "totalPages": math.ceil(len(chosen) / limit), "totalResults": len(chosen)})

    async def one(request: web.Request) -> web.Response:
        article = world.articles.get(request.match_info["slug"].lower())
        if article is None:
            raise web.HTTPNotFound()
        return web.json_response({"article": view(article, _reader(request))})

    async def user(request: web.Request) -> web.Response:
        reader = _reader(request)
        if reader is None:
            raise web.HTTPUnauthorized()
        return web.json_response({"user": {"_id": oid(USERS.index(reader) + 1), "username": reader,
                                           "email": f"{reader}@example.com"}})

    async def profile(request: web.Request) -> web.Response:
        name = request.match_info["username"].lower()
        if name not in USERS:
            raise web.HTTPNotFound()
        return web.json_response({"profile": {"username": name, "following": (_reader(request), name) in world.follows}})

    application = web.Application()
    application.router.add_get("/api/articles", articles)
    application.router.add_get("/api/articles/feed", feed)
    application.router.add_get("/api/articles/{slug}", one)
    application.router.add_get("/api/catalog", catalog)
    application.router.add_get("/api/user", user)
    application.router.add_get("/api/profiles/{username}", profile)
    return application


def reads() -> list[tuple[str, str | None]]:
    """Every query shape, as anonymous and as each reader: (path, reader)."""
    shapes = ["/api/articles", "/api/articles?limit=3&offset=2", "/api/articles?limit=0", "/api/articles?limit=-1",
              "/api/articles?offset=x", "/api/articles?author=nobody", "/api/articles?author=%20ALICE",
              "/api/articles?favorited=nobody", "/api/articles?tag=none",
              "/api/catalog", "/api/catalog?page=2&limit=4", "/api/catalog?page=0&limit=500",
              "/api/catalog?page=9&limit=3", "/api/catalog?limit=7", "/api/catalog?sortBy=title:desc&limit=5&page=2",
              "/api/catalog?sortBy=createdAt:asc,title&limit=4&pretty=1", "/api/catalog?limit=x&page=y"]
    shapes += [f"/api/articles?tag={tag}" for tag in TAGS] + [f"/api/articles?tag={tag}&author=bob" for tag in TAGS]
    shapes += [f"/api/articles?author={user}" for user in USERS] + [f"/api/articles?favorited={user}" for user in USERS]
    shapes += [f"/api/articles/post-{n:02d}" for n in range(14)] + ["/api/articles/POST-03"]
    shapes += [f"/api/profiles/{user}" for user in USERS] + ["/api/profiles/CAROL"]
    found: list[tuple[str, str | None]] = [(path, reader) for path in shapes for reader in (None, *USERS)]
    found += [(path, reader) for path in ("/api/articles/feed", "/api/articles/feed?limit=1&offset=1", "/api/user")
              for reader in USERS]
    return found

