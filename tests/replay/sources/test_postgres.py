"""The PostgreSQL source against a real server: batches rebuild API documents in a
bounded number of round trips, read-only, with a statement timeout."""
from __future__ import annotations

import asyncio
import textwrap
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from shadow.compare.diff import compare
from shadow.model import Outcome
from shadow.replay.sources.postgres import PostgresSource
from shadow.rules import Entity, RuleSet, load_rules

SCHEMA = """
CREATE TABLE id_map (collection text NOT NULL, legacy_object_id text NOT NULL, new_id uuid NOT NULL UNIQUE,
                     PRIMARY KEY (collection, legacy_object_id));
CREATE TABLE users (id uuid PRIMARY KEY, legacy_object_id text NOT NULL UNIQUE, name text NOT NULL);
CREATE TABLE orders (id uuid PRIMARY KEY, legacy_object_id text NOT NULL UNIQUE, buyer_id uuid NOT NULL,
                     seller_ref_kind text, seller_id uuid, seller_external_ref text,
                     total numeric(38, 18) NOT NULL, meta jsonb, created_at timestamptz NOT NULL);
CREATE TABLE order_lines (order_id uuid NOT NULL, position int NOT NULL, sku text NOT NULL, qty int NOT NULL);
CREATE TABLE order_watchers (order_id uuid NOT NULL, user_id uuid NOT NULL);
CREATE TABLE order_shipping (order_id uuid PRIMARY KEY, city text NOT NULL, note text);
"""
RULES = """\
entity: order
collection: orders
table: orders
fields:
  _id: legacy_object_id
  buyerId: {ref: buyer_id, to: users}
  sellerId: {mixed: seller, to: users}
  total: {column: total, as: decimal}
  meta: {json: meta}
  lines: {rows: order_lines, fk: order_id, order_by: position, fields: {sku: sku, qty: qty}}
  watcherIds: {rows: order_watchers, fk: order_id, order: unordered, value: {ref: user_id, to: users}}
  shipping: {child: order_shipping, fk: order_id, fields: {city: city, note: note}}
  createdAt: createdAt_column_is_created_at
routes:
  - route: GET /api/users/{userId}/orders
    list: true
    complete: true
    where: {buyer_id: {param: userId, to: users}}
""".replace("createdAt_column_is_created_at", "{column: created_at, as: timestamp}")


def oid(number: int) -> str:
    return f"{number:024x}"


@pytest.fixture
def rules(tmp_path: Path) -> RuleSet:
    (tmp_path / "orders.yaml").write_text(textwrap.dedent(RULES))
    return load_rules(tmp_path)


async def seed(dsn: str, orders: int) -> tuple[dict[str, dict], dict[str, uuid.UUID]]:
    """`orders` orders for two users; returns the API documents by key and user uuids."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(SCHEMA)
        users = {oid(1): uuid.uuid4(), oid(2): uuid.uuid4()}
        for legacy, new_id in users.items():
            await connection.execute("INSERT INTO users VALUES ($1, $2, 'x')", new_id, legacy)
            await connection.execute("INSERT INTO id_map VALUES ('users', $1, $2)", legacy, new_id)
        documents = {}
        for number in range(orders):
            key, new_id = oid(1000 + number), uuid.uuid4()
            buyer = oid(1 + number % 2)
            template = number % 3 == 0
            created = datetime(2026, 1, 1, 10, 0, 0, 123456, tzinfo=UTC)
            await connection.execute(
                "INSERT INTO orders VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", new_id, key, users[buyer],
                "template" if template else "entity", None if template else users[oid(2)],
                "tpl-7" if template else None, Decimal("12.5"), '{"source": "web", "n": 1}', created)
            await connection.execute("INSERT INTO id_map VALUES ('orders', $1, $2)", key, new_id)
            await connection.executemany("INSERT INTO order_lines VALUES ($1, $2, $3, $4)",
                                         [(new_id, 1, "B", 2), (new_id, 0, "A", 1)])
            await connection.executemany("INSERT INTO order_watchers VALUES ($1, $2)",
                                         [(new_id, users[oid(2)]), (new_id, users[oid(1)])])
            if number % 2 == 0:
                await connection.execute("INSERT INTO order_shipping VALUES ($1, 'Lyon', NULL)", new_id)
            documents[key] = {
                "_id": key, "buyerId": buyer, "sellerId": "tpl-7" if template else oid(2),
                "total": {"$numberDecimal": "12.50"}, "meta": {"n": 1, "source": "web"},
                "lines": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}],
                "watcherIds": [oid(1), oid(2)], "createdAt": "2026-01-01T10:00:00.123Z",
            } | ({"shipping": {"city": "Lyon"}} if number % 2 == 0 else {})
        return documents, users
    finally:
        await connection.close()


async def test_batch_rebuilds_api_documents_in_five_round_trips(pg_dsn: str, rules: RuleSet) -> None:
    documents, _ = await seed(pg_dsn, 50)
    entity: Entity = rules.entities["order"]
    source = await PostgresSource.create(pg_dsn, statement_timeout=2.0)
    try:
        keys = [*documents, oid(999_999)]
        candidates = await source.fetch(entity, keys)
        # main rows, 3 child tables, id_map once for the whole batch
        assert source.round_trips == 5
        assert candidates[oid(999_999)] is None
        assert compare(entity, None, candidates[oid(999_999)], date(2026, 11, 22)).outcome is Outcome.MISSING
        for key, control in documents.items():
            verdict = compare(entity, control, candidates[key], date(2026, 11, 22))
            assert verdict.outcome is Outcome.MATCH, (key, verdict)
        first = candidates[oid(1000)]
        assert first["lines"] == [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}]  # order_by position
        assert first["sellerId"] == "tpl-7" and first["shipping"] == {"city": "Lyon", "note": None}
        source.round_trips = 0
        await source.fetch(entity, list(documents)[:10])
        assert source.round_trips == 4  # id_map answers now come from the cache
    finally:
        await source.close()


async def test_single_key_and_divergence(pg_dsn: str, rules: RuleSet) -> None:
    documents, _ = await seed(pg_dsn, 2)
    entity = rules.entities["order"]
    connection = await asyncpg.connect(pg_dsn)
    await connection.execute("UPDATE order_lines SET qty = 5 WHERE sku = 'B'")
    await connection.close()
    source = await PostgresSource.create(pg_dsn)
    try:
        key = oid(1001)
        candidate = (await source.fetch(entity, [key]))[key]
        verdict = compare(entity, documents[key], candidate, date(2026, 11, 22))
        assert verdict.outcome is Outcome.MISMATCH
        assert [(diff.path, diff.at, diff.control, diff.candidate) for diff in verdict.diffs] == [
            ("lines[*].qty", "lines[1].qty", 2, 5)]
    finally:
        await source.close()


async def test_list_keys_of_a_complete_list_route(pg_dsn: str, rules: RuleSet) -> None:
    _, _ = await seed(pg_dsn, 6)
    entity = rules.entities["order"]
    [route] = rules.routes
    source = await PostgresSource.create(pg_dsn)
    try:
        assert await source.list_keys(entity, route, {"userId": oid(1)}) == {oid(1000), oid(1002), oid(1004)}
        assert await source.list_keys(entity, route, {"userId": oid(77)}) == set()  # unknown parent
    finally:
        await source.close()


async def test_source_cannot_write(pg_dsn: str, rules: RuleSet) -> None:
    await seed(pg_dsn, 1)
    source = await PostgresSource.create(pg_dsn)
    try:
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await source.pool.execute("DELETE FROM orders")
    finally:
        await source.close()
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=1)
    try:  # a pool handed in: each batch runs in a read-only transaction
        handed = PostgresSource(pool)
        assert (await handed.fetch(rules.entities["order"], [oid(1000)]))[oid(1000)] is not None
    finally:
        await pool.close()


async def test_a_stalled_table_times_out_instead_of_hanging(pg_dsn: str, rules: RuleSet) -> None:
    await seed(pg_dsn, 1)
    locker = await asyncpg.connect(pg_dsn)
    source = await PostgresSource.create(pg_dsn, statement_timeout=0.3)
    try:
        transaction = locker.transaction()
        await transaction.start()
        await locker.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        with pytest.raises((asyncpg.QueryCanceledError, asyncio.TimeoutError)):  # raised, not hung
            await source.fetch(rules.entities["order"], [oid(1000)])
        await transaction.rollback()
    finally:
        await source.close()
        await locker.close()
