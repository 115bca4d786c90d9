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
from tests.verify.conftest import Domain, differences, shadow_verify, valid_report


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
        planted["sum_type"], planted["sum_currency"] = entry["type"], entry["amount"]["currency"]
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
        opener = ObjectId()
        await client[domain.mongo_db].disputes.update_one({"_id": dispute["_id"]}, {"$set": {"openedBy": opener}})
    finally:
        await client.close()
    planted["dangling_mongo"], planted["dangling_mongo_ref"] = str(dispute["_id"]), str(opener)
    return planted



def one(found: list[dict[str, Any]], **wanted: Any) -> dict[str, Any]:
    hits = [d for d in found if all(d.get(k) == v for k, v in wanted.items())]
    assert hits, f"nothing like {wanted} in {found}"
    return hits[0]


async def test_each_planted_kind_is_found_by_the_right_layer(domain: Domain) -> None:
    planted = await plant(domain)
    code, report, err = await shadow_verify(domain, "--json")
    assert code == 1, err
    valid_report(report)
    found = differences(report)
    # missing row / extra row: counts and docs
    ledger = [d for d in found if d["entity"] == "funds_ledger_entries"]
    entries = len(domain.dataset.collections["fundsledgerentries"])
    counted = one(ledger, layer="counts", check="count", mongo=entries, postgres=entries - 1)
    assert counted["count"] == 1 and counted["documents"] == [{"key": planted["missing"], "mongo": "present",
                                                              "postgres": None}]
    one(ledger, layer="docs", kind="missing", key=planted["missing"])
    addresses = len(domain.dataset.collections["addresses"])
    counted = one(found, entity="addresses", layer="counts", check="count", mongo=addresses, postgres=addresses + 1)
    assert [d["key"] for d in counted["documents"]] == [planted["extra"]]
    one(found, entity="addresses", layer="docs", kind="extra", key=planted["extra"])
    # dropped child row: counts per relationship and the document's array
    requests = [d for d in found if d["entity"] == "purchase_requests"]
    rows = one(requests, layer="counts", check="rows.offers")
    assert rows["mongo"] == rows["postgres"] + 1 and rows["count"] == 1
    assert rows["documents"][0]["key"] == planted["dropped_child"]
    assert rows["documents"][0]["mongo"] == rows["documents"][0]["postgres"] + 1
    one(requests, layer="docs", key=planted["dropped_child"], path="offers[*]")
    # dangling ref: PG NULL FK where Mongo had a resolvable id
    refs = one(requests, layer="counts", check="refs.categoryId")
    assert refs["mongo"] == refs["postgres"] + 1
    assert [(d["key"], d["postgres"]) for d in refs["documents"]] == [(planted["dangling"], None)]
    one(requests, layer="docs", key=planted["dangling"], path="categoryId")
    dangling = one(found, entity="disputes", layer="counts", check="dangling.openedBy", kind="dangling_in_mongo",
                   mongo=1, count=1)
    assert dangling["documents"] == [{"key": planted["dangling_mongo"], "path": "openedBy",
                                      "ref": planted["dangling_mongo_ref"]}]
    one(found, entity="disputes", layer="docs", key=planted["dangling_mongo"], path="openedBy")
    # sum off by 1e-18: the sums layer, in the entry's group, exactly
    failed = {c["check"] for c in report["entities"]["funds_ledger_entries"]["layers"]["sums"]["checks"]
              if not c["passed"]}
    assert "sums.amount_by_type" in failed
    total = one(ledger, layer="sums", check="sums.amount_by_type", kind="sum",
                group={"type": planted["sum_type"], "amount.currency": planted["sum_currency"]})
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
    one(payments, layer="sums", check="sets.pending_idempotency", kind="missing_in_postgres",
        group={"idempotencyKey": planted["idempotency"]})
    one(payments, layer="sums", check="sets.pending_idempotency", kind="extra_in_postgres",
        group={"idempotencyKey": planted["idempotency"] + "-x"})
    # nothing else: every difference belongs to a plant
    assert {d["entity"] for d in found} == {"funds_ledger_entries", "purchase_requests", "users", "payments",
                                             "addresses", "disputes"}


async def test_text_report_names_what_each_side_holds(domain: Domain) -> None:
    planted = await plant(domain)
    code, text, err = await shadow_verify(domain, "--entity", "funds_ledger_entries", "--entity", "disputes")
    assert code == 1, err
    assert f"document [missing] {planted['missing']}: in Mongo, missing from PostgreSQL" in text
    assert "mongo=null postgres=null" not in text
    # a counts difference lists its documents under it
    assert f"dangling.openedBy [dangling_in_mongo]: mongo=1 postgres=0\n    1 document(s), e.g.:\n" \
           f"      {planted['dangling_mongo']} path=\"openedBy\" ref=\"{planted['dangling_mongo_ref']}\"" in text
