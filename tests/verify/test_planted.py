"""Each planted kind is found by the right layer at the right path: missing row, extra
row, dropped child row, dangling ref, sum off by 1e-18, changed field in a cold document,
broken idempotency set. Planted in PostgreSQL (or Mongo) of a consistent copy."""
from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
from bson import ObjectId
from pymongo import AsyncMongoClient

from shadow.publish.redaction import is_mask
from tests.verify.conftest import Domain, differences, shadow_verify


async def plant(domain: Domain) -> dict[str, str]:
    docs = domain.dataset.collections
    used: set[str] = set()

    def pick(collection: str, fits: Any = lambda d: True) -> Any:
        doc = next(d for d in docs[collection] if str(d["_id"]) not in used and fits(d))
        used.add(str(doc["_id"]))
        return doc

    conn = await asyncpg.connect(domain.pg_dsn)
    try:
        planted: dict[str, str] = {}
        missing = pick("fundsledgerentries")
        await conn.execute("DELETE FROM funds_ledger_entries WHERE legacy_object_id = $1", str(missing["_id"]))
        planted["missing"] = str(missing["_id"])
        twin = pick("addresses")
        extra = "ffffffff" + uuid.uuid4().hex[:16]
        await conn.execute(
            "INSERT INTO addresses (id, legacy_object_id, user_id, label, line1, city, postal_code, country, "
            "is_primary, created_at, updated_at) SELECT gen_random_uuid(), $2, user_id, label, line1, city, "
            "postal_code, country, false, created_at, updated_at FROM addresses WHERE legacy_object_id = $1",
            str(twin["_id"]), extra)
        planted["extra"] = extra
        request = pick("purchaserequests", lambda d: len(d["offers"]) >= 1)
        await conn.execute("DELETE FROM purchase_request_offers WHERE pr_id = (SELECT id FROM purchase_requests "
                           "WHERE legacy_object_id = $1) AND position = 0", str(request["_id"]))
        planted["dropped_child"] = str(request["_id"])
        dangling = pick("purchaserequests", lambda d: d.get("categoryId") is not None)
        await conn.execute("UPDATE purchase_requests SET category_id = NULL WHERE legacy_object_id = $1",
                           str(dangling["_id"]))
        planted["dangling"] = str(dangling["_id"])
        entry = pick("fundsledgerentries")
        await conn.execute("UPDATE funds_ledger_entries SET amount = amount + 0.000000000000000001 "
                           "WHERE legacy_object_id = $1", str(entry["_id"]))
        planted["sum"] = str(entry["_id"])
        planted["sum_group"] = f"type={entry['type']},amount.currency={entry['amount']['currency']}"
        cold = pick("users")
        await conn.execute("UPDATE users SET name = name || ' (edited)' WHERE legacy_object_id = $1", str(cold["_id"]))
        planted["cold"] = str(cold["_id"])
        shown = pick("users", lambda d: d.get("email"))  # a changed e-mail: the report masks both sides
        await conn.execute("UPDATE users SET email = 'changed.' || email WHERE legacy_object_id = $1", str(shown["_id"]))
        planted["email"], planted["email_value"] = str(shown["_id"]), shown["email"]
        pending = pick("payments", lambda d: d["status"] == "pending")
        await conn.execute("UPDATE payments SET idempotency_key = idempotency_key || '-x' WHERE legacy_object_id = $1",
                           str(pending["_id"]))
        planted["idempotency"] = pending["idempotencyKey"]
    finally:
        await conn.close()
    # a dangling reference in Mongo: the dispute's opener does not exist
    dispute = pick("disputes")
    client: AsyncMongoClient[Any] = AsyncMongoClient(domain.mongo_uri, tz_aware=True)
    try:
        await client[domain.mongo_db].disputes.update_one({"_id": dispute["_id"]}, {"$set": {"openedBy": ObjectId()}})
    finally:
        await client.close()
    planted["dangling_mongo"] = str(dispute["_id"])
    return planted



def one(found: list[dict[str, Any]], **wanted: Any) -> dict[str, Any]:
    hits = [d for d in found if all(d.get(k) == v for k, v in wanted.items())]
    assert hits, f"nothing like {wanted} in {found}"
    return hits[0]


async def test_each_planted_kind_is_found_by_the_right_layer(domain: Domain) -> None:
    planted = await plant(domain)
    code, report, err = await shadow_verify(domain, "--json")
    assert code == 1, err
    found = differences(report)
    # missing row / extra row: counts and docs
    ledger = [d for d in found if d["entity"] == "funds_ledger_entries"]
    entries = len(domain.dataset.collections["fundsledgerentries"])
    one(ledger, layer="counts", check="count", mongo=entries, postgres=entries - 1)
    one(ledger, layer="docs", kind="missing", key=planted["missing"])
    addresses = len(domain.dataset.collections["addresses"])
    one(found, entity="addresses", layer="counts", check="count", mongo=addresses, postgres=addresses + 1)
    one(found, entity="addresses", layer="docs", kind="extra", key=planted["extra"])
    # dropped child row: counts per relationship and the document's array
    requests = [d for d in found if d["entity"] == "purchase_requests"]
    rows = one(requests, layer="counts", check="rows.offers")
    assert rows["mongo"] == rows["postgres"] + 1
    one(requests, layer="docs", key=planted["dropped_child"], path="offers[*]")
    # dangling ref: PG NULL FK where Mongo had a resolvable id
    refs = one(requests, layer="counts", check="refs.categoryId")
    assert refs["mongo"] == refs["postgres"] + 1
    one(requests, layer="docs", key=planted["dangling"], path="categoryId")
    one(found, entity="disputes", layer="counts", check="dangling.openedBy", kind="dangling_in_mongo", mongo=1)
    one(found, entity="disputes", layer="docs", key=planted["dangling_mongo"], path="openedBy")
    # sum off by 1e-18: the sums layer, in the entry's group, exactly
    total = one(ledger, layer="sums", check="sums.amount_by_type", kind="sum", key=planted["sum_group"])
    from decimal import Decimal
    assert Decimal(total["postgres"]["sum"]) - Decimal(total["mongo"]["sum"]) == Decimal("1E-18")
    one(ledger, layer="docs", key=planted["sum"], path="amount.value")
    # changed field in a cold document (no traffic ever reads it)
    one(found, entity="users", layer="docs", kind="mismatch", key=planted["cold"], path="name")
    email = one(found, entity="users", layer="docs", kind="mismatch", key=planted["email"], path="email")
    assert is_mask(email["mongo"]) and is_mask(email["postgres"]) and email["mongo"] != email["postgres"]
    assert planted["email_value"] not in json.dumps(report)  # the report leaves the process: redacted
    # broken idempotency set
    payments = [d for d in found if d["entity"] == "payments"]
    one(payments, layer="sums", check="sets.pending_idempotency", kind="missing_in_postgres", key=planted["idempotency"])
    one(payments, layer="sums", check="sets.pending_idempotency", kind="extra_in_postgres",
        key=planted["idempotency"] + "-x")
    # nothing else: every difference belongs to a plant
    assert {d["entity"] for d in found} == {"funds_ledger_entries", "purchase_requests", "users", "payments",
                                             "addresses", "disputes"}
