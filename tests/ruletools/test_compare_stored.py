"""`shadow compare` on clean documents the way Mongo stores them: a version key and a
field absent since before its schema default existed are not differences once the
rules' `stored:` view says what the API's serializer does."""
from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient

from tests.ruletools.test_compare_cli import shadow_compare


async def test_version_key_and_absent_default_are_not_differences(marketplace: Any) -> None:
    planted = {p.legacy_id for p in marketplace.drifts}
    user = next(d for d in marketplace.dataset.collections["users"]
                if not d["isEmailVerified"] and str(d["_id"]) not in planted)
    client: AsyncMongoClient[Any] = AsyncMongoClient(marketplace.mongo_uri, tz_aware=True)
    try:
        await client[marketplace.mongo_db].users.update_one(
            {"_id": user["_id"]}, {"$unset": {"isEmailVerified": ""}, "$set": {"__v": 9}})
    finally:
        await client.close()
    code, out, err = await shadow_compare(marketplace, "--entity", "users", "--id", str(user["_id"]))
    assert code == 0, out + err
    assert "MATCH" in out
