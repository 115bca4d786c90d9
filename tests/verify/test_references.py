"""References go by the rule, and every counts difference names its documents: a dangling
reference of each stored type (ObjectId, 24-hex string, free string; a FK id_map does not
resolve) is found with its id; a resolvable 24-hex string is a reference like an ObjectId;
a Mixed external ref resolves through id_map, not by its text shape; offsetting child-row
changes in two parents are two named parents; references inside child rows are checked;
the (buyer, key) idempotency tuple is a set of a reference and a column."""
from __future__ import annotations

from typing import Any

import asyncpg
from bson import ObjectId
from pymongo import AsyncMongoClient

from tests.verify.conftest import Domain, differences, shadow_verify


def found(report: dict[str, Any], entity: str, check: str, kind: str = "count") -> dict[str, Any]:
    hits = [d for d in differences(report, entity) if d["check"] == check and d["kind"] == kind]
    assert len(hits) == 1, (check, kind, differences(report, entity))
    return hits[0]


async def mongo_set(domain: Domain, collection: str, key: Any, change: dict[str, Any]) -> None:
    client: AsyncMongoClient[Any] = AsyncMongoClient(domain.mongo_uri, tz_aware=True)
    try:
        await client[domain.mongo_db][collection].update_one({"_id": key}, {"$set": change})
    finally:
        await client.close()


async def test_a_dangling_reference_of_each_stored_type_is_named(domain: Domain) -> None:
    docs = domain.dataset.collections
    disputes, requests = docs["disputes"], docs["purchaserequests"]
    by_object_id, by_hex = disputes[0], disputes[1]
    by_slug = next(d for d in requests if d.get("categoryId") is not None)
    resolvable = next(d for d in requests if d.get("categoryId") is not None and d is not by_slug)
    ghost, ghost_hex = ObjectId(), str(ObjectId())
    await mongo_set(domain, "disputes", by_object_id["_id"], {"openedBy": ghost})
    await mongo_set(domain, "disputes", by_hex["_id"], {"paymentId": ghost_hex})
    await mongo_set(domain, "purchaserequests", by_slug["_id"], {"categoryId": "electronics-and-gadgets"})
    # a parent id stored as its 24-hex string still names the category: a reference, resolved
    await mongo_set(domain, "purchaserequests", resolvable["_id"], {"categoryId": str(resolvable["categoryId"])})
    code, report, err = await shadow_verify(domain, "--json", "--entity", "disputes", "--entity", "purchase_requests",
                                            "--layer", "counts")
    assert code == 1, err
    opened = found(report, "disputes", "dangling.openedBy", "dangling_in_mongo")
    assert opened["count"] == 1 and opened["documents"] == [
        {"key": str(by_object_id["_id"]), "path": "openedBy", "ref": str(ghost)}]
    paid = found(report, "disputes", "dangling.paymentId", "dangling_in_mongo")
    assert paid["documents"] == [{"key": str(by_hex["_id"]), "path": "paymentId", "ref": ghost_hex}]
    slug = found(report, "purchase_requests", "dangling.categoryId", "dangling_in_mongo")
    assert slug["documents"] == [{"key": str(by_slug["_id"]), "path": "categoryId", "ref": "electronics-and-gadgets"}]
    # the dangling ones differ from PostgreSQL (named); the resolvable string does not
    categories = found(report, "purchase_requests", "refs.categoryId")
    assert [d["key"] for d in categories["documents"]] == [str(by_slug["_id"])]
    assert categories["mongo"] == categories["postgres"]  # a total alone would have said clean


async def test_a_foreign_key_id_map_does_not_resolve_is_dangling_in_postgres(domain: Domain) -> None:
    request = next(d for d in domain.dataset.collections["purchaserequests"] if d.get("categoryId") is not None)
    category = str(request["categoryId"])
    citing = sorted(str(d["_id"]) for d in domain.dataset.collections["purchaserequests"]
                    if str(d.get("categoryId")) == category)
    conn = await asyncpg.connect(domain.pg_dsn)
    try:
        new_id = await conn.fetchval("SELECT new_id FROM id_map WHERE collection = 'categories' "
                                     "AND legacy_object_id = $1", category)
        await conn.execute("DELETE FROM id_map WHERE new_id = $1", new_id)
    finally:
        await conn.close()
    code, report, err = await shadow_verify(domain, "--json", "--entity", "purchase_requests", "--layer", "counts")
    assert code == 1, err
    lost = found(report, "purchase_requests", "dangling.categoryId", "dangling_in_postgres")
    assert lost["count"] == len(citing)
    assert sorted(d["key"] for d in lost["documents"]) == citing
    assert {d["ref"] for d in lost["documents"]} == {str(new_id)}


async def test_a_mixed_external_ref_resolves_through_id_map_not_by_its_shape(domain: Domain) -> None:
    payments = [d for d in domain.dataset.collections["payments"]
                if isinstance(d.get("purchaseRequestId"), ObjectId)]
    as_hex, as_call = payments[0], payments[1]
    conn = await asyncpg.connect(domain.pg_dsn)
    try:
        for payment, text in ((as_hex, str(as_hex["purchaseRequestId"])),
                              (as_call, f'ObjectId("{as_call["purchaseRequestId"]}")')):
            await conn.execute("UPDATE payments SET purchase_request_ref_kind = 'template', purchase_request_id = NULL, "
                               "purchase_request_external_ref = $2 WHERE legacy_object_id = $1", str(payment["_id"]), text)
    finally:
        await conn.close()
    code, report, err = await shadow_verify(domain, "--json", "--entity", "payments", "--layer", "counts")
    assert code == 1, err
    # the hex string is the legacy id of a purchase request: it resolves, on neither side dangling;
    # the ObjectId("…") text names nothing: not a reference to the request — a named difference
    mismatch = found(report, "payments", "refs.purchaseRequestId")
    assert mismatch["documents"] == [{"key": str(as_call["_id"]), "path": "purchaseRequestId",
                                      "mongo": str(as_call["purchaseRequestId"]),
                                      "postgres": f'ObjectId("{as_call["purchaseRequestId"]}")'}]
    assert not [d for d in differences(report, "payments") if d["check"].startswith("dangling.")]


async def test_offsetting_child_row_changes_in_two_parents_are_both_named(domain: Domain) -> None:
    requests = [d for d in domain.dataset.collections["purchaserequests"] if len(d["offers"]) >= 1]
    loser, gainer = requests[0], requests[1]
    conn = await asyncpg.connect(domain.pg_dsn)
    try:
        await conn.execute(
            "UPDATE purchase_request_offers SET pr_id = (SELECT id FROM purchase_requests WHERE legacy_object_id = $2), "
            "position = 1000 WHERE position = 0 AND pr_id = (SELECT id FROM purchase_requests "
            "WHERE legacy_object_id = $1)", str(loser["_id"]), str(gainer["_id"]))
    finally:
        await conn.close()
    code, report, err = await shadow_verify(domain, "--json", "--entity", "purchase_requests", "--layer", "counts")
    assert code == 1, err
    offers = found(report, "purchase_requests", "rows.offers")
    assert offers["mongo"] == offers["postgres"]  # the totals cancel
    assert offers["count"] == 2
    assert {(d["key"], d["postgres"] - d["mongo"]) for d in offers["documents"]} == {
        (str(loser["_id"]), -1), (str(gainer["_id"]), 1)}
    moved = found(report, "purchase_requests", "refs.offers[]")  # and the reference moved with it
    assert {d["key"] for d in moved["documents"]} == {str(loser["_id"]), str(gainer["_id"])}


async def test_a_reference_inside_child_rows_is_checked(domain: Domain) -> None:
    dispute = next(d for d in domain.dataset.collections["disputes"] if len(d["timeline"]) >= 2)
    ghost = ObjectId()
    await mongo_set(domain, "disputes", dispute["_id"], {"timeline.1.actorId": ghost})
    code, report, err = await shadow_verify(domain, "--json", "--entity", "disputes", "--layer", "counts")
    assert code == 1, err
    actor = found(report, "disputes", "dangling.timeline[].actorId", "dangling_in_mongo")
    assert actor["documents"] == [{"key": str(dispute["_id"]), "path": "timeline[1].actorId", "ref": str(ghost)}]


async def test_the_buyer_key_idempotency_tuple_is_a_set(domain: Domain) -> None:
    payments = domain.dataset.collections["payments"]
    payment = payments[0]
    other = next(d for d in payments if d["buyerId"] != payment["buyerId"])
    conn = await asyncpg.connect(domain.pg_dsn)
    try:
        await conn.execute("UPDATE payments SET buyer_id = (SELECT buyer_id FROM payments WHERE legacy_object_id = $2) "
                           "WHERE legacy_object_id = $1", str(payment["_id"]), str(other["_id"]))
    finally:
        await conn.close()
    code, report, err = await shadow_verify(domain, "--json", "--entity", "payments", "--layer", "sums")
    assert code == 1, err
    key = payment["idempotencyKey"]
    lost = found(report, "payments", "sets.buyer_idempotency", "missing_in_postgres")
    assert lost["group"] == {"buyerId": str(payment["buyerId"]), "idempotencyKey": key}
    gained = found(report, "payments", "sets.buyer_idempotency", "extra_in_postgres")
    assert gained["group"] == {"buyerId": str(other["buyerId"]), "idempotencyKey": key}
