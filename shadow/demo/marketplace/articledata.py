"""The articles family of the sample API (issue 20), in the manner of the RealWorld
"Conduit" app: writers (a username for a marketplace user), articles with a tag list
and the users who favorited them, and follows between users. Generated from the
dataset's users with an RNG of its own (the marketplace's draws, and so its planted
keys, are unchanged), loaded into MongoDB as documents and into PostgreSQL remodeled:

    Mongo writers  {_id: <the user's _id>, username}      -> writers (id = users.id)
    Mongo articles {_id, slug, title, author, tagList,    -> articles, article_tags (junction),
                    favoritedBy: [user _id], createdAt}      article_favorites (junction)
    Mongo follows  {_id, follower, followee}              -> follows

`plant_articles` plants one divergence per construct in PostgreSQL only (a dropped tag
row, a dropped favorite, a PostgreSQL-only follow, a PostgreSQL-only article) and says
where each must be found. Routes: articles.py; rules: rules/examples/articles/.
"""
from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId

from shadow.demo.marketplace.generate import Dataset

TAGS = ("dragons", "go", "rust", "tea", "sql", "mongo")
#: words of titles: none a prefix of another, so every collation orders titles alike
_WORDS = ("amber", "birch", "cedar", "delta", "ember", "fjord", "grove", "harbor")
SCHEMA = """
CREATE TABLE IF NOT EXISTS writers (id uuid PRIMARY KEY REFERENCES users (id), username text NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS articles (
  id uuid PRIMARY KEY, legacy_object_id text NOT NULL UNIQUE, slug text NOT NULL UNIQUE, title text NOT NULL,
  author_id uuid NOT NULL REFERENCES users (id), created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS article_tags (article_id uuid NOT NULL REFERENCES articles (id), tag text NOT NULL,
                                         PRIMARY KEY (article_id, tag));
CREATE TABLE IF NOT EXISTS article_favorites (article_id uuid NOT NULL REFERENCES articles (id),
                                              user_id uuid NOT NULL REFERENCES users (id),
                                              PRIMARY KEY (article_id, user_id));
CREATE TABLE IF NOT EXISTS follows (follower_id uuid NOT NULL REFERENCES users (id),
                                    followee_id uuid NOT NULL REFERENCES users (id),
                                    PRIMARY KEY (follower_id, followee_id));
"""


@dataclass(frozen=True)
class Articles:
    """The generated documents, per Mongo collection, and the PostgreSQL ids of articles."""

    writers: list[dict[str, Any]]
    articles: list[dict[str, Any]]
    follows: list[dict[str, Any]]
    article_ids: dict[str, uuid.UUID]  # slug -> PostgreSQL id

    def username(self, user: Any) -> str:
        return str(next(w["username"] for w in self.writers if w["_id"] == user))


def generate_articles(dataset: Dataset, per_user: int = 2) -> Articles:
    """About `per_user` articles per user, tags, favorites and follows, from the seed."""
    rng = random.Random(f"articles:{dataset.seed}")
    users = dataset.collections["users"]
    writers = [{"_id": user["_id"], "username": f"{user['profile']['firstName'].lower()}{index}"}
               for index, user in enumerate(users)]
    start = datetime(2026, 2, 1, tzinfo=UTC)
    articles = []
    for number in range(len(users) * per_user):
        created = start + timedelta(minutes=number * 37, milliseconds=rng.randrange(1000))
        article_id = ObjectId(int(created.timestamp()).to_bytes(4, "big") + rng.randbytes(8))
        articles.append({
            "_id": article_id, "slug": f"post-{number:03d}",
            "title": f"{rng.choice(_WORDS)} {rng.choice(_WORDS)} {number:03d}",
            "author": rng.choice(users)["_id"], "tagList": sorted(rng.sample(TAGS, rng.randrange(1, 4))),
            "favoritedBy": [user["_id"] for user in rng.sample(users, rng.randrange(0, 4))],
            "createdAt": created, "updatedAt": created, "__v": 0,
        })
    follows = []
    for user in users:
        for followee in rng.sample(users, rng.randrange(0, 4)):
            if followee["_id"] != user["_id"]:
                follows.append({"_id": ObjectId(rng.randbytes(12)), "follower": user["_id"],
                                "followee": followee["_id"]})
    ids = {article["slug"]: uuid.UUID(int=rng.getrandbits(128), version=4) for article in articles}
    return Articles(writers, articles, follows, ids)


async def load_articles(conn: Any, db: Any, data: Articles, user_ids: dict[tuple[str, str], uuid.UUID]) -> None:
    """The documents into MongoDB, the rows into PostgreSQL (after the marketplace's)."""
    for name, docs in (("writers", data.writers), ("articles", data.articles), ("follows", data.follows)):
        if docs:
            await db[name].insert_many([dict(doc) for doc in docs])

    def user(value: ObjectId) -> uuid.UUID:
        return user_ids[("users", str(value))]

    await conn.execute(SCHEMA)
    async with conn.transaction():
        await conn.copy_records_to_table("writers", records=[(user(w["_id"]), w["username"]) for w in data.writers],
                                         columns=("id", "username"))
        await conn.copy_records_to_table("articles", columns=(
            "id", "legacy_object_id", "slug", "title", "author_id", "created_at", "updated_at"), records=[
            (data.article_ids[a["slug"]], str(a["_id"]), a["slug"], a["title"], user(a["author"]), a["createdAt"],
             a["updatedAt"]) for a in data.articles])
        await conn.copy_records_to_table("article_tags", columns=("article_id", "tag"), records=[
            (data.article_ids[a["slug"]], tag) for a in data.articles for tag in a["tagList"]])
        await conn.copy_records_to_table("article_favorites", columns=("article_id", "user_id"), records=[
            (data.article_ids[a["slug"]], user(fan)) for a in data.articles for fan in a["favoritedBy"]])
        await conn.copy_records_to_table("follows", columns=("follower_id", "followee_id"), records=[
            (user(f["follower"]), user(f["followee"])) for f in data.follows])


@dataclass(frozen=True)
class ArticlePlant:
    """One divergence planted in PostgreSQL and where it must be found:
    (entity, route, key, query string or None for any, path)."""

    kind: str
    findings: tuple[tuple[str, str, str, str | None, str], ...]


async def plant_articles(conn: Any, data: Articles, seed: int) -> tuple[ArticlePlant, ...]:
    rng = random.Random(f"articledrift:{seed}")
    one, lists, feed = "GET /api/articles/{slug}", "GET /api/articles", "GET /api/articles/feed"
    plants = []
    async with conn.transaction():
        tagged = rng.choice([a for a in data.articles if a["tagList"]])
        tag = tagged["tagList"][0]
        await conn.execute("DELETE FROM article_tags WHERE article_id = $1 AND tag = $2",
                           data.article_ids[tagged["slug"]], tag)
        plants.append(ArticlePlant("tag_row", (("article", one, tagged["slug"], None, "tagList[*]"),
                                               ("article", lists, "[list]", f"tag={tag}", "articles[*]"),
                                               ("article", lists, "[list]", f"tag={tag}", "articlesCount"))))
        liked = rng.choice([a for a in data.articles if a["favoritedBy"] and a["slug"] != tagged["slug"]])
        fan = liked["favoritedBy"][0]
        await conn.execute("DELETE FROM article_favorites WHERE article_id = $1 AND user_id = "
                           "(SELECT new_id FROM id_map WHERE collection = 'users' AND legacy_object_id = $2)",
                           data.article_ids[liked["slug"]], str(fan))
        plants.append(ArticlePlant("favorite", (
            ("article", one, liked["slug"], None, "favoritesCount"), ("article", one, liked["slug"], None, "favorited"),
            ("article", lists, "[list]", f"favorited={data.username(fan)}", "articles[*]"))))
        followed = {(f["follower"], f["followee"]) for f in data.follows}
        authors = [a["author"] for a in data.articles]
        follower, followee = next((w["_id"], author) for w in data.writers for author in authors
                                  if w["_id"] != author and (w["_id"], author) not in followed)
        await conn.execute("INSERT INTO follows SELECT a.new_id, b.new_id FROM id_map a, id_map b WHERE "
                           "a.collection = 'users' AND a.legacy_object_id = $1 AND "
                           "b.collection = 'users' AND b.legacy_object_id = $2", str(follower), str(followee))
        plants.append(ArticlePlant("follow", (
            ("profile", "GET /api/profiles/{username}", data.username(followee), None, "following"),
            ("article", feed, "[list]", None, "articlesCount"), ("article", feed, "<extra>", None, "<extra>"))))
        newest = max(a["createdAt"] for a in data.articles) + timedelta(days=1)
        await conn.execute("INSERT INTO articles SELECT gen_random_uuid(), $1, 'post-999', 'amber amber 999', "
                           "new_id, $2, $2 FROM id_map WHERE collection = 'users' AND legacy_object_id = $3",
                           str(ObjectId(rng.randbytes(12))), newest, str(data.articles[0]["author"]))
        plants.append(ArticlePlant("pg_only_article", (
            ("article", lists, "post-999", "", "<extra>"), ("article", lists, "[list]", "", "articlesCount"),
            ("article", "GET /api/catalog", "[list]", None, "totalResults"))))
    return tuple(plants)
