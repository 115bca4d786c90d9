"""Backfilled PostgreSQL rows say exactly what the Mongo documents say, field by field.

The expected mapping is written out here in SQL (one query per collection that rebuilds
the document from the rows, resolving every reference through id_map) — on purpose
independent of the rules engine and of shadow/demo/marketplace/backfill.py.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import pytest
from bson import Decimal128, ObjectId
from pymongo import AsyncMongoClient

from shadow.demo.marketplace import apply_schema
from shadow.demo.marketplace.backfill import assign_ids, backfill
from shadow.demo.marketplace.cli import LoadedDomain, load_domain
from shadow.demo.marketplace.generate import generate

HELPERS = """
CREATE FUNCTION pg_temp.iso(timestamptz) RETURNS text LANGUAGE sql AS
  $$ SELECT to_char($1 AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') $$;
CREATE FUNCTION pg_temp.dec(numeric) RETURNS text LANGUAGE sql AS $$ SELECT trim_scale($1)::text $$;
CREATE FUNCTION pg_temp.legacy(uuid) RETURNS text LANGUAGE sql AS
  $$ SELECT legacy_object_id FROM id_map WHERE new_id = $1 $$;
CREATE FUNCTION pg_temp.mixed(ref_kind, uuid, text) RETURNS text LANGUAGE sql AS
  $$ SELECT CASE $1 WHEN 'entity' THEN pg_temp.legacy($2) WHEN 'template' THEN $3 END $$;
"""

# collection -> SQL returning (legacy_object_id, doc jsonb): required fields || optional ones
EXPECTED_SQL: dict[str, str] = {
    "users": """
SELECT u.legacy_object_id, jsonb_build_object(
  '_id', u.legacy_object_id, 'password', u.password_hash, 'name', u.name, 'role', u.role,
  'profile', jsonb_build_object('firstName', u.profile_first_name, 'lastName', u.profile_last_name)
             || jsonb_strip_nulls(jsonb_build_object('phone', u.profile_phone)),
  'isEmailVerified', u.is_email_verified,
  'passkeys', COALESCE((SELECT jsonb_agg(jsonb_build_object('credentialId', p.credential_id,
      'publicKey', p.public_key, 'counter', p.counter, 'createdAt', pg_temp.iso(p.created_at)) ORDER BY p.position)
      FROM user_passkeys p WHERE p.user_id = u.id), '[]'),
  'refreshTokens', COALESCE((SELECT jsonb_agg(jsonb_build_object('token', t.token,
      'createdAt', pg_temp.iso(t.created_at), 'expiresAt', pg_temp.iso(t.expires_at)) ORDER BY t.position)
      FROM user_refresh_tokens t WHERE t.user_id = u.id), '[]'),
  'createdAt', pg_temp.iso(u.created_at), 'updatedAt', pg_temp.iso(u.updated_at))
 || jsonb_strip_nulls(jsonb_build_object('email', u.email, 'referralCode', u.referral_code,
  'referredBy', pg_temp.legacy(u.referred_by), 'emailVerificationToken', u.email_verification_token,
  'emailVerificationExpires', pg_temp.iso(u.email_verification_expires)))
FROM users u""",
    "addresses": """
SELECT a.legacy_object_id, jsonb_build_object('_id', a.legacy_object_id, 'userId', pg_temp.legacy(a.user_id),
  'label', a.label, 'line1', a.line1, 'city', a.city, 'postalCode', a.postal_code, 'country', a.country,
  'isPrimary', a.is_primary, 'createdAt', pg_temp.iso(a.created_at), 'updatedAt', pg_temp.iso(a.updated_at))
 || jsonb_strip_nulls(jsonb_build_object('line2', a.line2))
FROM addresses a""",
    "categories": """
SELECT c.legacy_object_id, jsonb_build_object('_id', c.legacy_object_id, 'name', c.name, 'slug', c.slug,
  'parentId', pg_temp.mixed(c.parent_ref_kind, c.parent_id, c.parent_external_ref), 'isActive', c.is_active,
  'createdAt', pg_temp.iso(c.created_at), 'updatedAt', pg_temp.iso(c.updated_at))
FROM categories c""",
    "purchaserequests": """
SELECT r.legacy_object_id, jsonb_build_object('_id', r.legacy_object_id, 'buyerId', pg_temp.legacy(r.buyer_id),
  'categoryId', pg_temp.legacy(r.category_id), 'title', r.title, 'quantity', r.quantity,
  'budget', jsonb_build_object('value', pg_temp.dec(r.budget), 'currency', r.budget_currency),
  'status', r.status,
  'offers', COALESCE((SELECT jsonb_agg(pg_temp.legacy(o.offer_id) ORDER BY o.position)
      FROM purchase_request_offers o WHERE o.pr_id = r.id), '[]'),
  'preferredSellerIds', COALESCE((SELECT jsonb_agg(pg_temp.legacy(s.seller_id) ORDER BY s.position)
      FROM purchase_request_preferred_sellers s WHERE s.pr_id = r.id), '[]'),
  'createdAt', pg_temp.iso(r.created_at), 'updatedAt', pg_temp.iso(r.updated_at))
 || jsonb_strip_nulls(jsonb_build_object('description', r.description,
  'deliveryInfo', (SELECT jsonb_build_object('addressId', pg_temp.legacy(d.address_id), 'city', d.city,
      'country', d.country, 'postalCode', d.postal_code, 'notes', d.notes,
      'preferredDate', pg_temp.iso(d.preferred_date)) FROM pr_delivery_info d WHERE d.pr_id = r.id)))
FROM purchase_requests r""",
    "selleroffers": """
SELECT o.legacy_object_id, jsonb_build_object('_id', o.legacy_object_id, 'sellerId', pg_temp.legacy(o.seller_id),
  'purchaseRequestId', pg_temp.legacy(o.purchase_request_id),
  'price', jsonb_build_object('value', pg_temp.dec(o.price), 'currency', o.price_currency),
  'deliveryDays', o.delivery_days, 'status', o.status,
  'createdAt', pg_temp.iso(o.created_at), 'updatedAt', pg_temp.iso(o.updated_at))
 || jsonb_strip_nulls(jsonb_build_object('message', o.message))
FROM seller_offers o""",
    "payments": """
SELECT p.legacy_object_id, jsonb_build_object('_id', p.legacy_object_id, 'buyerId', pg_temp.legacy(p.buyer_id),
  'purchaseRequestId', pg_temp.mixed(p.purchase_request_ref_kind, p.purchase_request_id, p.purchase_request_external_ref),
  'sellerOfferId', pg_temp.mixed(p.seller_offer_ref_kind, p.seller_offer_id, p.seller_offer_external_ref),
  'sellerId', pg_temp.mixed(p.seller_ref_kind, p.seller_id, p.seller_external_ref),
  'amount', jsonb_build_object('value', pg_temp.dec(p.amount), 'currency', p.currency),
  'status', p.status, 'method', p.method, 'blockchain', p.blockchain, 'metadata', p.metadata,
  'idempotencyKey', p.idempotency_key,
  'createdAt', pg_temp.iso(p.created_at), 'updatedAt', pg_temp.iso(p.updated_at))
FROM payments p""",
    "fundsledgerentries": """
SELECT f.legacy_object_id, jsonb_build_object('_id', f.legacy_object_id, 'userId', pg_temp.legacy(f.user_id),
  'purchaseRequestId', pg_temp.mixed(f.purchase_request_ref_kind, f.purchase_request_id, f.purchase_request_external_ref),
  'paymentId', pg_temp.mixed(f.payment_ref_kind, f.payment_id, f.payment_external_ref),
  'type', f.type, 'amount', jsonb_build_object('value', pg_temp.dec(f.amount), 'currency', f.currency),
  'balanceAfter', pg_temp.dec(f.balance_after), 'createdAt', pg_temp.iso(f.created_at))
 || jsonb_strip_nulls(jsonb_build_object('idempotencyKey', f.idempotency_key, 'description', f.description))
FROM funds_ledger_entries f""",
    "disputes": """
SELECT d.legacy_object_id, jsonb_build_object('_id', d.legacy_object_id,
  'purchaseRequestId', pg_temp.legacy(d.purchase_request_id), 'paymentId', pg_temp.legacy(d.payment_id),
  'openedBy', pg_temp.legacy(d.opened_by), 'reason', d.reason, 'status', d.status, 'resolution', d.resolution,
  'evidence', COALESCE((SELECT jsonb_agg(jsonb_build_object('type', e.type, 'description', e.description,
      'uploadedBy', pg_temp.legacy(e.uploaded_by), 'uploadedAt', pg_temp.iso(e.uploaded_at))
      || jsonb_strip_nulls(jsonb_build_object('url', e.url)) ORDER BY e.position)
      FROM dispute_evidence e WHERE e.dispute_id = d.id), '[]'),
  'timeline', COALESCE((SELECT jsonb_agg(jsonb_build_object('action', t.action,
      'actorId', pg_temp.legacy(t.actor_id), 'at', pg_temp.iso(t.at))
      || jsonb_strip_nulls(jsonb_build_object('note', t.note)) ORDER BY t.position)
      FROM dispute_timeline t WHERE t.dispute_id = d.id), '[]'),
  'createdAt', pg_temp.iso(d.created_at), 'updatedAt', pg_temp.iso(d.updated_at))
FROM disputes d""",
}


def canonical(value: Any) -> Any:
    """A Mongo value in the form the SQL above produces (decimals without trailing zeros)."""
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, Decimal128):
        return format(value.to_decimal().normalize(), "f")
    if isinstance(value, dict):
        return {key: canonical(item) for key, item in value.items() if key != "__v"}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


async def expected_documents(conn: asyncpg.Connection, collection: str) -> dict[str, Any]:
    rows = await conn.fetch(EXPECTED_SQL[collection])
    return {row[0]: orjson.loads(row[1]) for row in rows}


@pytest.fixture
async def loaded(pg_dsn: str, mongo_server, mongo_db_name: str) -> AsyncIterator[tuple[LoadedDomain, Any]]:
    domain = await load_domain(pg_dsn, mongo_server.uri, mongo_db_name, scale=40, seed=11, drift=False)
    conn = await asyncpg.connect(pg_dsn)
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_server.uri, tz_aware=True)
    await conn.execute(HELPERS)
    try:
        yield domain, (conn, client[mongo_db_name])
    finally:
        await conn.close()
        await client.close()


@pytest.mark.parametrize("collection", list(EXPECTED_SQL))
async def test_mongo_documents_and_pg_rows_agree(loaded, collection: str) -> None:
    domain, (conn, mongo) = loaded
    stored = {str(doc["_id"]): canonical(doc) async for doc in mongo[collection].find({})}
    assert len(stored) == len(domain.dataset.collections[collection]) == 40
    rebuilt = await expected_documents(conn, collection)
    assert rebuilt.keys() == stored.keys()
    for legacy_id, document in stored.items():
        assert rebuilt[legacy_id] == document, f"{collection}/{legacy_id}"


async def test_every_document_is_in_id_map_with_a_random_uuid(loaded) -> None:
    domain, (conn, _) = loaded
    rows = await conn.fetch("SELECT collection, legacy_object_id, new_id FROM id_map")
    assert len(rows) == domain.dataset.count() == 320
    assert {(r["collection"], r["legacy_object_id"]): r["new_id"] for r in rows} == domain.id_map.new_ids
    assert all(r["legacy_object_id"][:8] not in r["new_id"].hex for r in rows)  # not derived from the ObjectId
    again = assign_ids(generate(11, 40), 11)
    assert again == domain.id_map
    assert assign_ids(generate(11, 40), 12).new_ids.keys() == again.new_ids.keys()
    assert assign_ids(generate(11, 40), 12) != again


async def test_backfill_through_a_pool(pg_dsn: str) -> None:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    try:
        await apply_schema(pool)
        ids = await backfill(pool, generate(2, 10), 2)
        assert await pool.fetchval("SELECT count(*) FROM id_map") == len(ids.new_ids) == 80
    finally:
        await pool.close()
