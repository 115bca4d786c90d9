"""The embedded servers the demo and tests rely on really are PostgreSQL 18 and a Mongo
wire server that keeps Decimal128 money exact."""
from __future__ import annotations

from decimal import Decimal

import asyncpg
from bson import Decimal128, ObjectId
from pymongo import AsyncMongoClient


async def test_postgres_is_real_and_isolated(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert (await conn.fetchval("show server_version")).startswith("18")
        assert await conn.fetchval("select count(*) from pg_tables where schemaname='public'") == 0
    finally:
        await conn.close()


async def test_mongo_round_trips_decimal128(mongo_server, mongo_db_name: str) -> None:
    client: AsyncMongoClient = AsyncMongoClient(mongo_server.uri, tz_aware=True)
    try:
        coll = client[mongo_db_name].payments
        oid = ObjectId()
        await coll.insert_one({"_id": oid, "amount": Decimal128("12.500000000000000001")})
        doc = await coll.find_one({"_id": oid})
        assert doc["amount"].to_decimal() == Decimal("12.500000000000000001")
    finally:
        await client.close()
