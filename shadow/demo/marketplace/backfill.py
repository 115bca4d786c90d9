"""The reference backfill: the generated Mongo documents as remodeled PostgreSQL rows.

Runs once after `apply_schema` on an empty database (demo, tests, benchmark). Every
legacy `_id` first gets a new uuid drawn from an RNG seeded with `seed` — NOT derived
from the ObjectId, so the only way back is the `id_map` table — then rows are COPYed
parents before children. PostgreSQL keeps everything the Mongo document holds,
including what the API hides (password hash, refresh tokens, verification token).
The column-by-column mapping is in docs/domain.md.
"""
from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
from bson import Decimal128, ObjectId

from shadow.demo.marketplace import COLLECTIONS
from shadow.demo.marketplace.generate import Dataset, Document

Row = tuple[Any, ...]


@dataclass(frozen=True)
class IdMap:
    """legacy ObjectId (24 hex) of a collection ↔ the new uuid, as written to `id_map`."""

    new_ids: dict[tuple[str, str], uuid.UUID]

    def new_id(self, collection: str, legacy_id: str | ObjectId) -> uuid.UUID:
        return self.new_ids[(collection, str(legacy_id))]


def assign_ids(dataset: Dataset, seed: int) -> IdMap:
    """One uuid per document, from the seeded RNG (same seed + dataset → same uuids)."""
    rng = random.Random(f"backfill:{seed}")
    return IdMap({
        (collection, str(doc["_id"])): uuid.UUID(int=rng.getrandbits(128), version=4)
        for collection in COLLECTIONS for doc in dataset.collections[collection]
    })


#: table -> columns, in COPY order (parents before children)
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "id_map": ("collection", "legacy_object_id", "new_id"),
    "users": ("id", "legacy_object_id", "email", "password_hash", "name", "role", "profile_first_name",
              "profile_last_name", "profile_phone", "referral_code", "referred_by", "is_email_verified",
              "email_verification_token", "email_verification_expires", "created_at", "updated_at"),
    "user_passkeys": ("user_id", "position", "credential_id", "public_key", "counter", "created_at"),
    "user_refresh_tokens": ("user_id", "position", "token", "created_at", "expires_at"),
    "addresses": ("id", "legacy_object_id", "user_id", "label", "line1", "line2", "city", "postal_code",
                  "country", "is_primary", "created_at", "updated_at"),
    "categories": ("id", "legacy_object_id", "name", "slug", "parent_ref_kind", "parent_id",
                   "parent_external_ref", "is_active", "created_at", "updated_at"),
    "purchase_requests": ("id", "legacy_object_id", "buyer_id", "category_id", "title", "description",
                          "quantity", "budget", "budget_currency", "status", "created_at", "updated_at"),
    "pr_delivery_info": ("pr_id", "address_id", "city", "country", "postal_code", "notes", "preferred_date"),
    "purchase_request_preferred_sellers": ("pr_id", "seller_id", "position"),
    "seller_offers": ("id", "legacy_object_id", "seller_id", "purchase_request_id", "price", "price_currency",
                      "delivery_days", "message", "status", "created_at", "updated_at"),
    "purchase_request_offers": ("pr_id", "offer_id", "position"),
    "payments": ("id", "legacy_object_id", "buyer_id",
                 "purchase_request_ref_kind", "purchase_request_id", "purchase_request_external_ref",
                 "seller_offer_ref_kind", "seller_offer_id", "seller_offer_external_ref",
                 "seller_ref_kind", "seller_id", "seller_external_ref",
                 "amount", "currency", "status", "method", "blockchain", "metadata", "idempotency_key",
                 "created_at", "updated_at"),
    "funds_ledger_entries": ("id", "legacy_object_id", "user_id",
                             "purchase_request_ref_kind", "purchase_request_id", "purchase_request_external_ref",
                             "payment_ref_kind", "payment_id", "payment_external_ref",
                             "type", "amount", "currency", "balance_after", "idempotency_key", "description",
                             "created_at"),
    "disputes": ("id", "legacy_object_id", "purchase_request_id", "payment_id", "opened_by", "reason", "status",
                 "resolution", "created_at", "updated_at"),
    "dispute_evidence": ("dispute_id", "position", "type", "url", "description", "uploaded_by", "uploaded_at"),
    "dispute_timeline": ("dispute_id", "position", "action", "actor_id", "note", "at"),
}


class _Rows:
    """Turns documents into row tuples, resolving references through the id map."""

    def __init__(self, ids: IdMap) -> None:
        self.ids = ids.new_ids

    def ref(self, collection: str, value: ObjectId | None) -> uuid.UUID | None:
        return None if value is None else self.ids[(collection, str(value))]

    def mixed(self, collection: str, value: ObjectId | str | None) -> tuple[str | None, uuid.UUID | None, str | None]:
        """A Mixed id → (ref_kind, entity uuid, external ref)."""
        if value is None:
            return None, None, None
        if isinstance(value, ObjectId):
            return "entity", self.ids[(collection, str(value))], None
        return "template", None, value

    def rows(self, dataset: Dataset, ids: IdMap) -> Iterator[tuple[str, list[Row]]]:
        c = dataset.collections
        yield "id_map", [(coll, legacy, new) for (coll, legacy), new in ids.new_ids.items()]
        yield from self.users(c["users"])
        yield "addresses", [self.address(d) for d in c["addresses"]]
        yield "categories", [self.category(d) for d in c["categories"]]
        yield from self.purchase_requests(c["purchaserequests"])
        yield "seller_offers", [self.offer(d) for d in c["selleroffers"]]
        yield "purchase_request_offers", [
            (self.ref("purchaserequests", d["_id"]), self.ref("selleroffers", offer), position)
            for d in c["purchaserequests"] for position, offer in enumerate(d["offers"])]
        yield "payments", [self.payment(d) for d in c["payments"]]
        yield "funds_ledger_entries", [self.ledger(d) for d in c["fundsledgerentries"]]
        yield from self.disputes(c["disputes"])

    def users(self, docs: list[Document]) -> Iterator[tuple[str, list[Row]]]:
        users: list[Row] = []
        passkeys: list[Row] = []
        tokens: list[Row] = []
        for d in docs:
            uid = self.ref("users", d["_id"])
            profile = d.get("profile") or {}
            users.append((uid, str(d["_id"]), d.get("email"), d["password"], d["name"], d["role"],
                          profile.get("firstName"), profile.get("lastName"), profile.get("phone"),
                          d.get("referralCode"), self.ref("users", d.get("referredBy")), d["isEmailVerified"],
                          d.get("emailVerificationToken"), d.get("emailVerificationExpires"),
                          d["createdAt"], d["updatedAt"]))
            passkeys.extend((uid, i, p["credentialId"], p["publicKey"], p["counter"], p["createdAt"])
                            for i, p in enumerate(d.get("passkeys", ())))
            tokens.extend((uid, i, t["token"], t["createdAt"], t["expiresAt"])
                          for i, t in enumerate(d.get("refreshTokens", ())))
        yield "users", users
        yield "user_passkeys", passkeys
        yield "user_refresh_tokens", tokens

    def address(self, d: Document) -> Row:
        return (self.ref("addresses", d["_id"]), str(d["_id"]), self.ref("users", d["userId"]), d["label"],
                d["line1"], d.get("line2"), d["city"], d["postalCode"], d["country"], d["isPrimary"],
                d["createdAt"], d["updatedAt"])

    def category(self, d: Document) -> Row:
        return (self.ref("categories", d["_id"]), str(d["_id"]), d["name"], d["slug"],
                *self.mixed("categories", d.get("parentId")), d["isActive"], d["createdAt"], d["updatedAt"])

    def purchase_requests(self, docs: list[Document]) -> Iterator[tuple[str, list[Row]]]:
        requests: list[Row] = []
        delivery: list[Row] = []
        preferred: list[Row] = []
        for d in docs:
            pid = self.ref("purchaserequests", d["_id"])
            requests.append((pid, str(d["_id"]), self.ref("users", d["buyerId"]),
                             self.ref("categories", d.get("categoryId")), d["title"], d.get("description"),
                             d["quantity"], _decimal(d["budget"]["value"]), d["budget"]["currency"], d["status"],
                             d["createdAt"], d["updatedAt"]))
            info = d.get("deliveryInfo")
            if info is not None:
                delivery.append((pid, self.ref("addresses", info.get("addressId")), info["city"], info["country"],
                                 info.get("postalCode"), info.get("notes"), info.get("preferredDate")))
            preferred.extend((pid, self.ref("users", seller), i) for i, seller in enumerate(d["preferredSellerIds"]))
        yield "purchase_requests", requests
        yield "pr_delivery_info", delivery
        yield "purchase_request_preferred_sellers", preferred

    def offer(self, d: Document) -> Row:
        return (self.ref("selleroffers", d["_id"]), str(d["_id"]), self.ref("users", d["sellerId"]),
                self.ref("purchaserequests", d["purchaseRequestId"]), _decimal(d["price"]["value"]),
                d["price"]["currency"], d["deliveryDays"], d.get("message"), d["status"],
                d["createdAt"], d["updatedAt"])

    def payment(self, d: Document) -> Row:
        return (self.ref("payments", d["_id"]), str(d["_id"]), self.ref("users", d["buyerId"]),
                *self.mixed("purchaserequests", d.get("purchaseRequestId")),
                *self.mixed("selleroffers", d.get("sellerOfferId")),
                *self.mixed("users", d.get("sellerId")),
                _decimal(d["amount"]["value"]), d["amount"]["currency"], d["status"], d["method"],
                _jsonb(d.get("blockchain")), _jsonb(d.get("metadata")), d.get("idempotencyKey"),
                d["createdAt"], d["updatedAt"])

    def ledger(self, d: Document) -> Row:
        return (self.ref("fundsledgerentries", d["_id"]), str(d["_id"]), self.ref("users", d["userId"]),
                *self.mixed("purchaserequests", d.get("purchaseRequestId")),
                *self.mixed("payments", d.get("paymentId")),
                d["type"], _decimal(d["amount"]["value"]), d["amount"]["currency"],
                _decimal(d.get("balanceAfter")), d.get("idempotencyKey"), d.get("description"), d["createdAt"])

    def disputes(self, docs: list[Document]) -> Iterator[tuple[str, list[Row]]]:
        disputes: list[Row] = []
        evidence: list[Row] = []
        timeline: list[Row] = []
        for d in docs:
            did = self.ref("disputes", d["_id"])
            disputes.append((did, str(d["_id"]), self.ref("purchaserequests", d["purchaseRequestId"]),
                             self.ref("payments", d.get("paymentId")), self.ref("users", d["openedBy"]),
                             d["reason"], d["status"], d.get("resolution"), d["createdAt"], d["updatedAt"]))
            evidence.extend((did, i, e["type"], e.get("url"), e.get("description"),
                             self.ref("users", e["uploadedBy"]), e["uploadedAt"])
                            for i, e in enumerate(d.get("evidence", ())))
            timeline.extend((did, i, t["action"], self.ref("users", t["actorId"]), t.get("note"), t["at"])
                            for i, t in enumerate(d.get("timeline", ())))
        yield "disputes", disputes
        yield "dispute_evidence", evidence
        yield "dispute_timeline", timeline


def _decimal(value: Decimal128 | None) -> Any:
    return None if value is None else value.to_decimal()


def _jsonb(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


async def backfill(conn_or_pool: Any, dataset: Dataset, seed: int) -> IdMap:
    """Write every document's rows (one transaction, COPY per table); the id map used."""
    ids = assign_ids(dataset, seed)
    if isinstance(conn_or_pool, asyncpg.Pool):
        async with conn_or_pool.acquire() as conn:
            await _copy_all(conn, dataset, ids)
    else:
        await _copy_all(conn_or_pool, dataset, ids)
    return ids


async def _copy_all(conn: Any, dataset: Dataset, ids: IdMap) -> None:
    async with conn.transaction():
        for table, rows in _Rows(ids).rows(dataset, ids):
            if rows:
                await conn.copy_records_to_table(table, records=rows, columns=TABLE_COLUMNS[table])
