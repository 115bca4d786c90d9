"""The remodeled schema applies and enforces every constraint the migration relies on."""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from bson import ObjectId

from shadow.demo.marketplace import apply_schema

NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def legacy() -> str:
    return str(ObjectId())


@pytest.fixture
async def db(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(pg_dsn)
    await apply_schema(conn)
    try:
        yield conn
    finally:
        await conn.close()


async def user(db: asyncpg.Connection, email: str | None = None, referral: str | None = None,
               referred_by: uuid.UUID | None = None, user_id: uuid.UUID | None = None) -> uuid.UUID:
    user_id = user_id or uuid.uuid4()
    await db.execute(
        "INSERT INTO users (id, legacy_object_id, email, password_hash, name, role, referral_code, referred_by,"
        " created_at, updated_at) VALUES ($1, $2, $3, 'h', 'n', 'buyer', $4, $5, $6, $6)",
        user_id, legacy(), email, referral, referred_by, NOW)
    return user_id


async def request(db: asyncpg.Connection, buyer: uuid.UUID, quantity: int = 1) -> uuid.UUID:
    pr = uuid.uuid4()
    await db.execute(
        "INSERT INTO purchase_requests (id, legacy_object_id, buyer_id, title, quantity, budget, budget_currency,"
        " status, created_at, updated_at) VALUES ($1, $2, $3, 't', $4, 10.5, 'EUR', 'open', $5, $5)",
        pr, legacy(), buyer, quantity, NOW)
    return pr


async def payment(db: asyncpg.Connection, buyer: uuid.UUID, *, pr: tuple = (None, None, None),
                  offer: tuple = (None, None, None), seller: tuple = (None, None, None),
                  status: str = "pending", key: str | None = None, metadata: str | None = "{}") -> None:
    await db.execute(
        "INSERT INTO payments (id, legacy_object_id, buyer_id, purchase_request_ref_kind, purchase_request_id,"
        " purchase_request_external_ref, seller_offer_ref_kind, seller_offer_id, seller_offer_external_ref,"
        " seller_ref_kind, seller_id, seller_external_ref, amount, currency, status, method, metadata,"
        " idempotency_key, created_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 12.5, 'EUR', $13, 'card', $14, $15, $16, $16)",
        uuid.uuid4(), legacy(), buyer, *pr, *offer, *seller, status, metadata, key, NOW)


async def category(db: asyncpg.Connection, name: str, active: bool = True,
                   parent: tuple = (None, None, None)) -> uuid.UUID:
    cid = uuid.uuid4()
    await db.execute(
        "INSERT INTO categories (id, legacy_object_id, name, slug, parent_ref_kind, parent_id, parent_external_ref,"
        " is_active, created_at, updated_at) VALUES ($1, $2, $3, 's', $4, $5, $6, $7, $8, $8)",
        cid, legacy(), name, *parent, active, NOW)
    return cid


async def test_schema_creates_every_table(db: asyncpg.Connection) -> None:
    tables = {r["tablename"] for r in await db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == {
        "id_map", "users", "user_passkeys", "user_refresh_tokens", "addresses", "categories", "purchase_requests",
        "pr_delivery_info", "purchase_request_preferred_sellers", "seller_offers", "purchase_request_offers",
        "payments", "funds_ledger_entries", "disputes", "dispute_evidence", "dispute_timeline"}


async def test_id_map_keys(db: asyncpg.Connection) -> None:
    new = uuid.uuid4()
    await db.execute("INSERT INTO id_map VALUES ('users', $1, $2)", legacy(), new)
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("INSERT INTO id_map VALUES ('users', 'not-hex', $1)", uuid.uuid4())
    with pytest.raises(asyncpg.UniqueViolationError):  # one new id per legacy id
        await db.execute("INSERT INTO id_map VALUES ('payments', $1, $2)", legacy(), new)


async def test_users_sparse_unique_and_self_reference(db: asyncpg.Connection) -> None:
    first = await user(db, email="a@example.com", referral="REF1")
    await user(db)
    await user(db)  # many users without email / referral code
    with pytest.raises(asyncpg.UniqueViolationError, match="users_email_key"):
        await user(db, email="a@example.com")
    with pytest.raises(asyncpg.UniqueViolationError, match="users_referral_code_key"):
        await user(db, referral="REF1")
    await user(db, referred_by=first)
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await user(db, referred_by=uuid.uuid4())
    own = uuid.uuid4()
    with pytest.raises(asyncpg.CheckViolationError):
        await user(db, referred_by=own, user_id=own)
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("INSERT INTO user_refresh_tokens VALUES ($1, 0, 't', $2, $3)", first, NOW, NOW - timedelta(1))


async def test_one_primary_address_per_user(db: asyncpg.Connection) -> None:
    owner = await user(db)
    insert = ("INSERT INTO addresses (id, legacy_object_id, user_id, label, line1, city, postal_code, country,"
              " is_primary, created_at, updated_at) VALUES ($1, $2, $3, 'Home', 'l', 'c', 'p', 'DE', $4, $5, $5)")
    await db.execute(insert, uuid.uuid4(), legacy(), owner, True, NOW)
    await db.execute(insert, uuid.uuid4(), legacy(), owner, False, NOW)
    await db.execute(insert, uuid.uuid4(), legacy(), owner, False, NOW)
    with pytest.raises(asyncpg.UniqueViolationError, match="addresses_one_primary_per_user"):
        await db.execute(insert, uuid.uuid4(), legacy(), owner, True, NOW)


async def test_categories_normalized_active_name_and_parent(db: asyncpg.Connection) -> None:
    books = await category(db, "Books")
    await category(db, " BOOKS ", active=False)  # soft-deleted duplicates are fine
    with pytest.raises(asyncpg.UniqueViolationError, match="categories_active_name_key"):
        await category(db, "  books ")
    child = await category(db, "Novels", parent=("entity", books, None))
    await category(db, "Root-level", parent=("template", None, "template:catalog-v1"))
    for bad in (("template", books, None), ("template", None, None), ("entity", books, "x"), (None, None, "x"),
                (None, books, None)):
        with pytest.raises(asyncpg.CheckViolationError, match="categories_parent_ref_agrees"):
            await category(db, f"bad {bad}", parent=bad)
    await db.execute("DELETE FROM categories WHERE id = $1", books)
    row = await db.fetchrow("SELECT parent_ref_kind::text, parent_id FROM categories WHERE id = $1", child)
    assert tuple(row) == ("entity", None)  # ON DELETE SET NULL


async def test_payment_mixed_refs_must_agree(db: asyncpg.Connection) -> None:
    buyer = await user(db)
    pr = await request(db, buyer)
    offer = uuid.uuid4()
    await db.execute(
        "INSERT INTO seller_offers (id, legacy_object_id, seller_id, purchase_request_id, price, price_currency,"
        " delivery_days, status, created_at, updated_at) VALUES ($1, $2, $3, $4, 1, 'EUR', 3, 'pending', $5, $5)",
        offer, legacy(), buyer, pr, NOW)
    await payment(db, buyer, pr=("entity", pr, None), offer=("entity", offer, None),
                  seller=("template", None, "template:seller-1"))
    await payment(db, buyer, pr=("template", None, "template:pr-1"), status="completed")
    for field, column, target in (("pr", "purchase_request", pr), ("offer", "seller_offer", offer),
                                  ("seller", "seller", buyer)):
        for bad in (("entity", None, None), ("entity", target, "x"), ("template", target, None),
                    ("template", target, "x"), ("template", None, None), (None, target, None), (None, None, "x")):
            with pytest.raises(asyncpg.CheckViolationError, match=f"payments_{column}_ref_agrees"):
                await payment(db, buyer, **{field: bad})
    with pytest.raises(asyncpg.CheckViolationError, match="payments_metadata_is_object"):
        await payment(db, buyer, metadata="[1, 2]")
    with pytest.raises(asyncpg.InvalidTextRepresentationError):
        await payment(db, buyer, status="lost")


async def test_pending_idempotency_key_is_unique_only_while_pending(db: asyncpg.Connection) -> None:
    buyer = await user(db)
    await payment(db, buyer, key="k1")
    await payment(db, buyer, key="k1", status="completed")
    await payment(db, buyer, key="k1", status="failed")
    with pytest.raises(asyncpg.UniqueViolationError, match="payments_pending_idempotency_key"):
        await payment(db, buyer, key="k1")


async def test_ledger_mixed_refs_and_idempotency(db: asyncpg.Connection) -> None:
    owner = await user(db)
    insert = ("INSERT INTO funds_ledger_entries (id, legacy_object_id, user_id, purchase_request_ref_kind,"
              " purchase_request_id, purchase_request_external_ref, payment_ref_kind, payment_id,"
              " payment_external_ref, type, amount, currency, idempotency_key, created_at)"
              " VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, 'hold', 1.5, 'EUR', $9, $10)")
    await db.execute(insert, uuid.uuid4(), legacy(), owner, None, None, None, "template", "template:p", "k", NOW)
    await db.execute(insert, uuid.uuid4(), legacy(), owner, None, None, None, None, None, None, NOW)
    await db.execute(insert, uuid.uuid4(), legacy(), owner, None, None, None, None, None, None, NOW)
    with pytest.raises(asyncpg.UniqueViolationError, match="funds_ledger_entries_idempotency_key"):
        await db.execute(insert, uuid.uuid4(), legacy(), owner, None, None, None, None, None, "k", NOW)
    with pytest.raises(asyncpg.CheckViolationError, match="ledger_payment_ref_agrees"):
        await db.execute(insert, uuid.uuid4(), legacy(), owner, None, None, None, "entity", None, None, NOW)
    with pytest.raises(asyncpg.CheckViolationError, match="ledger_purchase_request_ref_agrees"):
        await db.execute(insert, uuid.uuid4(), legacy(), owner, "template", None, None, None, None, None, NOW)


async def test_purchase_request_and_child_constraints(db: asyncpg.Connection) -> None:
    buyer = await user(db)
    with pytest.raises(asyncpg.CheckViolationError):
        await request(db, buyer, quantity=0)
    pr = await request(db, buyer)
    await db.execute("INSERT INTO purchase_request_preferred_sellers VALUES ($1, $2, 0)", pr, buyer)
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute("INSERT INTO purchase_request_preferred_sellers VALUES ($1, $2, 1)", pr, buyer)
    await db.execute("INSERT INTO pr_delivery_info (pr_id, city, country) VALUES ($1, 'Paris', 'FR')", pr)
    with pytest.raises(asyncpg.UniqueViolationError):  # 1:1
        await db.execute("INSERT INTO pr_delivery_info (pr_id, city, country) VALUES ($1, 'Lyon', 'FR')", pr)
