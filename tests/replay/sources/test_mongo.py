"""The Mongo source (after a read flip): a batch by `_id`, in the API's toJSON shape."""
from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime
from pathlib import Path

from bson import Decimal128, ObjectId
from pymongo import AsyncMongoClient

from shadow.compare.diff import compare
from shadow.demo.embedded import MongoServer
from shadow.model import Outcome
from shadow.replay.sources.mongo import MongoSource
from shadow.rules import load_rules

RULES = """\
entity: user
collection: users
table: users
hidden: [password, refreshTokens]
fields:
  _id: legacy_object_id
  name: name
  balance: {column: balance, as: decimal}
  friendIds: {rows: friends, fk: user_id, order: unordered, value: {ref: friend_id, to: users}}
  createdAt: {column: created_at, as: timestamp}
routes:
  - route: GET /api/teams/{teamId}/users
    list: true
    complete: true
    where: {team_id: {param: teamId, to: teams}}
"""


async def test_fetch_gives_the_api_shape_and_none_for_absent(mongo_server: MongoServer, mongo_db_name: str,
                                                            tmp_path: Path) -> None:
    (tmp_path / "users.yaml").write_text(textwrap.dedent(RULES.replace("  name: name\n", "  name: name\n  teamId: {ref: team_id, to: teams}\n")))
    entity = load_rules(tmp_path).entities["user"]
    client: AsyncMongoClient = AsyncMongoClient(mongo_server.uri, tz_aware=True)
    team, other_team = ObjectId(), ObjectId()
    stored = [{"_id": ObjectId(), "name": f"u{n}", "teamId": team if n < 2 else other_team,
               "balance": Decimal128("10.50"), "friendIds": [ObjectId()], "password": "secret",
               "refreshTokens": [{"token": "t"}], "__v": 3,
               "createdAt": datetime(2026, 1, 1, 10, 0, 0, 123000, tzinfo=UTC)} for n in range(3)]
    try:
        await client[mongo_db_name]["users"].insert_many(stored)
        source = MongoSource(client, mongo_db_name)
        absent = str(ObjectId())
        found = await source.fetch(entity, [str(stored[0]["_id"]), absent])
        document = found[str(stored[0]["_id"])]
        assert found[absent] is None
        assert document == {"_id": str(stored[0]["_id"]), "name": "u0", "teamId": str(team),
                            "balance": {"$numberDecimal": "10.50"}, "friendIds": [str(stored[0]["friendIds"][0])],
                            "createdAt": "2026-01-01T10:00:00.123Z"}
        control = dict(document, balance=10.5)  # the PG-backed API shows a number: same value
        assert compare(entity, control, document, date(2026, 11, 22)).outcome is Outcome.MATCH
        route = load_rules(tmp_path).routes[0]
        assert await source.list_keys(entity, route, {"teamId": str(team)}) == {str(d["_id"]) for d in stored[:2]}
        await source.close()  # not its client: stays open
        assert await client[mongo_db_name]["users"].count_documents({}) == 3
    finally:
        await client.close()
