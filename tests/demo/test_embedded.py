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


def test_the_initdb_lock_is_exclusive_across_open_files(tmp_path, monkeypatch) -> None:
    """Two holders of the machine lock (separate open files, as two xdist workers have)
    never overlap: the second enters only after the first has left."""
    import threading

    from shadow.demo import embedded

    monkeypatch.setattr(embedded, "STATE_ROOT", tmp_path)
    first_in, second_tried, second_in = threading.Event(), threading.Event(), threading.Event()
    order: list[str] = []

    def second() -> None:
        first_in.wait()
        second_tried.set()
        with embedded._machine_lock("initdb"):
            order.append("second")
            second_in.set()

    thread = threading.Thread(target=second)
    thread.start()
    with embedded._machine_lock("initdb"):
        first_in.set()
        second_tried.wait()
        assert not second_in.wait(0.2)  # still locked out while the first holds the lock
        order.append("first")
    thread.join()
    assert order == ["first", "second"]
