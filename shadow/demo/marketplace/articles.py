"""The articles routes of the sample API (issue 20), in the manner of the RealWorld
"Conduit" app, computed per read from MongoDB (articledata.py):

    GET /api/articles?tag=&author=&favorited=&limit=&offset=
        {"articles": [view, ...], "articlesCount": n}   newest first; an unknown
        `author` drops the filter, an unknown `favorited` selects nothing; a `limit`
        outside 1..100 (or not a number) is 20
    GET /api/articles/feed?limit=&offset=      articles of the authors the reader follows
    GET /api/articles/{slug}                   {"article": view} (the slug in any case)
    GET /api/catalog?page=&limit=&sortBy=title:desc,createdAt
        {"results": [...], "page", "limit", "totalPages", "totalResults"}   by slug
        unless sorted; page numbers from 1, `limit` clamped to 1..100 (default 10)
    GET /api/user                              {"user": {"_id", "email", "name"}}: the reader
    GET /api/profiles/{username}               {"profile": {"username", "following"}}

    POST|DELETE /api/articles/{slug}/favorite  the reader favorites / unfavorites: {"article": view}
    POST|DELETE /api/profiles/{username}/follow  the reader follows / unfollows: {"profile": ...}
    PUT /api/articles/{slug}  {"article": {"tagList": [...]}}   a new tag list: {"article": view}

Writes need a reader (401 without) and touch MongoDB; with the app's dual write on
(dualwrite.py) the same change reaches PostgreSQL later, off the request, in the order
the writes of each row were made.

    view: {"slug", "title", "tagList", "createdAt", "favorited", "favoritesCount",
           "author": {"username", "following"}}

The reader comes from `Authorization: Token <JWT>` (or `Bearer`), verified by
tokens.py; no token reads anonymously (flags false), except the feed and /api/user (401).
"""
from __future__ import annotations

import json
import math
from typing import Any

from aiohttp import web
from bson import ObjectId
from pymongo import ReturnDocument

from shadow.demo.marketplace.backends import BACKENDS, BadRequest
from shadow.demo.marketplace.tojson import iso_ms
from shadow.demo.marketplace.tokens import reader_of

DEFAULT_LIMIT = 20
CATALOG_LIMIT = 10
MAX_LIMIT = 100
SORTABLE = {"title": "title", "createdAt": "createdAt"}


def _number(raw: str | None) -> int | None:
    try:
        return None if raw is None else int(raw)
    except ValueError:
        return None


def _db(request: web.Request) -> Any:
    return request.app[BACKENDS].db


async def _views(db: Any, articles: list[dict[str, Any]], reader: ObjectId | None) -> list[dict[str, Any]]:
    authors = list({article["author"] for article in articles})
    names = {writer["_id"]: writer["username"] async for writer in db["writers"].find({"_id": {"$in": authors}})}
    followed: set[ObjectId] = set()
    if reader is not None and authors:
        followed = {f["followee"] async for f in db["follows"].find({"follower": reader, "followee": {"$in": authors}})}
    return [{"slug": a["slug"], "title": a["title"], "tagList": sorted(a["tagList"]),
             "createdAt": iso_ms(a["createdAt"]), "favorited": reader in a["favoritedBy"],
             "favoritesCount": len(a["favoritedBy"]),
             "author": {"username": names.get(a["author"]), "following": a["author"] in followed}} for a in articles]


async def _page(request: web.Request, query: dict[str, Any], reader: ObjectId | None) -> web.Response:
    db = _db(request)
    limit = _number(request.query.get("limit"))
    limit = DEFAULT_LIMIT if limit is None or not 1 <= limit <= MAX_LIMIT else limit
    offset = max(0, _number(request.query.get("offset")) or 0)
    cursor = db["articles"].find(query).sort([("createdAt", -1), ("slug", 1)]).skip(offset).limit(limit)
    shown = await cursor.to_list(None)
    count = await db["articles"].count_documents(query)
    return web.json_response({"articles": await _views(db, shown, reader), "articlesCount": count})


async def _writer(db: Any, username: str) -> ObjectId | None:
    found = await db["writers"].find_one({"username": username})
    return None if found is None else found["_id"]


async def articles(request: web.Request) -> web.Response:
    reader = reader_of(request)
    db = _db(request)
    query: dict[str, Any] = {}
    author = await _writer(db, request.query.get("author", "").strip().lower())
    if author is not None:  # an unknown author drops the filter (the API's own quirk)
        query["author"] = author
    if "tag" in request.query:
        query["tagList"] = request.query["tag"]
    if "favorited" in request.query:
        query["favoritedBy"] = await _writer(db, request.query["favorited"]) or ObjectId(b"\0" * 12)
    return await _page(request, query, reader)


async def feed(request: web.Request) -> web.Response:
    reader = reader_of(request)
    if reader is None:
        raise web.HTTPUnauthorized(text='{"error": "login required"}', content_type="application/json")
    followees = [f["followee"] async for f in _db(request)["follows"].find({"follower": reader})]
    return await _page(request, {"author": {"$in": followees}}, reader)


async def catalog(request: web.Request) -> web.Response:
    reader = reader_of(request)
    db = _db(request)
    limit = _number(request.query.get("limit"))
    limit = CATALOG_LIMIT if limit is None else max(1, min(MAX_LIMIT, limit))
    number = max(1, _number(request.query.get("page")) or 1)
    order = []
    for item in (part for part in request.query.get("sortBy", "").split(",") if part):
        name, _, direction = item.partition(":")
        if name in SORTABLE:
            order.append((SORTABLE[name], -1 if direction == "desc" else 1))
    cursor = db["articles"].find({}).sort([*order, ("slug", 1)]).skip((number - 1) * limit).limit(limit)
    shown = await cursor.to_list(None)
    total = await db["articles"].count_documents({})
    return web.json_response({"results": await _views(db, shown, reader), "page": number, "limit": limit,
                              "totalPages": math.ceil(total / limit), "totalResults": total})


async def article(request: web.Request) -> web.Response:
    db = _db(request)
    found = await db["articles"].find_one({"slug": request.match_info["slug"].lower()})
    if found is None:
        return web.json_response({"error": "not found"}, status=404)
    return web.json_response({"article": (await _views(db, [found], reader_of(request)))[0]})


async def current_user(request: web.Request) -> web.Response:
    reader = reader_of(request)
    if reader is None:
        raise web.HTTPUnauthorized(text='{"error": "login required"}', content_type="application/json")
    user = await _db(request)["users"].find_one({"_id": reader})
    if user is None:
        raise web.HTTPUnauthorized(text='{"error": "no such user"}', content_type="application/json")
    shown = {"_id": str(user["_id"]), "name": user["name"]}
    if "email" in user:
        shown["email"] = user["email"]
    return web.json_response({"user": shown})


async def profile(request: web.Request) -> web.Response:
    db = _db(request)
    name = request.match_info["username"].lower()
    writer = await _writer(db, name)
    if writer is None:
        return web.json_response({"error": "not found"}, status=404)
    reader = reader_of(request)
    edge = None if reader is None else await db["follows"].find_one({"follower": reader, "followee": writer})
    following = edge is not None
    return web.json_response({"profile": {"username": name, "following": following}})


# --------------------------------------------------------------------------- writes

_USER = "(SELECT new_id FROM id_map WHERE collection = 'users' AND legacy_object_id = {})"
_ARTICLE = "(SELECT id FROM articles WHERE slug = {})"
FAVORITE = (f"INSERT INTO article_favorites SELECT {_ARTICLE.format('$1')}, {_USER.format('$2')} "
            "ON CONFLICT DO NOTHING")
UNFAVORITE = (f"DELETE FROM article_favorites WHERE article_id = {_ARTICLE.format('$1')} "
              f"AND user_id = {_USER.format('$2')}")
FOLLOW = f"INSERT INTO follows SELECT {_USER.format('$1')}, {_USER.format('$2')} ON CONFLICT DO NOTHING"
UNFOLLOW = f"DELETE FROM follows WHERE follower_id = {_USER.format('$1')} AND followee_id = {_USER.format('$2')}"
RETAG = (f"WITH gone AS (DELETE FROM article_tags WHERE article_id = {_ARTICLE.format('$1')} "
         "AND tag <> ALL($2::text[])) "
         f"INSERT INTO article_tags SELECT {_ARTICLE.format('$1')}, tag FROM unnest($2::text[]) AS tag "
         "ON CONFLICT DO NOTHING")


def _writer_required(request: web.Request) -> ObjectId:
    reader = reader_of(request)
    if reader is None:
        raise web.HTTPUnauthorized(text='{"error": "login required"}', content_type="application/json")
    return reader


def _dual_write(request: web.Request, row: str, statement: str, *args: Any) -> None:
    dual = request.app[BACKENDS].dual_write
    if dual is not None:
        dual.later(row, statement, *args)


async def favorite(request: web.Request) -> web.Response:
    reader = _writer_required(request)
    db = _db(request)
    slug, on = request.match_info["slug"].lower(), request.method == "POST"
    found = await db["articles"].find_one_and_update(
        {"slug": slug}, {"$addToSet" if on else "$pull": {"favoritedBy": reader}},
        return_document=ReturnDocument.AFTER)
    if found is None:
        return web.json_response({"error": "not found"}, status=404)
    _dual_write(request, f"article_favorites:{slug}:{reader}", FAVORITE if on else UNFAVORITE, slug, str(reader))
    return web.json_response({"article": (await _views(db, [found], reader))[0]})


async def follow(request: web.Request) -> web.Response:
    reader = _writer_required(request)
    db = _db(request)
    name, on = request.match_info["username"].lower(), request.method == "POST"
    writer = await _writer(db, name)
    if writer is None:
        return web.json_response({"error": "not found"}, status=404)
    edge = {"follower": reader, "followee": writer}
    if on:
        await db["follows"].update_one(edge, {"$setOnInsert": {"_id": ObjectId(), **edge}}, upsert=True)
    else:
        await db["follows"].delete_many(edge)
    _dual_write(request, f"follows:{reader}:{writer}", FOLLOW if on else UNFOLLOW, str(reader), str(writer))
    return web.json_response({"profile": {"username": name, "following": on}})


async def retag(request: web.Request) -> web.Response:
    reader = _writer_required(request)
    db = _db(request)
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("body must be JSON") from None
    tags = body.get("article", {}).get("tagList") if isinstance(body, dict) and isinstance(
        body.get("article"), dict) else None
    if not isinstance(tags, list) or not all(isinstance(tag, str) and tag for tag in tags):
        raise BadRequest("article.tagList must be a list of non-empty strings")
    slug = request.match_info["slug"].lower()
    found = await db["articles"].find_one_and_update(
        {"slug": slug}, {"$set": {"tagList": sorted(set(tags))}}, return_document=ReturnDocument.AFTER)
    if found is None:
        return web.json_response({"error": "not found"}, status=404)
    _dual_write(request, f"article_tags:{slug}", RETAG, slug, sorted(set(tags)))
    return web.json_response({"article": (await _views(db, [found], reader))[0]})


def add_article_routes(app: web.Application) -> None:
    """The routes, reading and writing MongoDB through the app's BACKENDS."""
    app.router.add_get("/api/articles", articles)
    app.router.add_get("/api/articles/feed", feed)
    app.router.add_get("/api/articles/{slug}", article)
    app.router.add_get("/api/catalog", catalog)
    app.router.add_get("/api/user", current_user)
    app.router.add_get("/api/profiles/{username}", profile)
    app.router.add_put("/api/articles/{slug}", retag)
    for method in ("POST", "DELETE"):
        app.router.add_route(method, "/api/articles/{slug}/favorite", favorite)
        app.router.add_route(method, "/api/profiles/{username}/follow", follow)
