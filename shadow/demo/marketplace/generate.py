"""Mongo-shaped marketplace documents, deterministic from a seed.

Runs before anything else of the domain: `generate(seed, scale)` returns a frozen
`Dataset` of real BSON values (ObjectId, tz-aware UTC datetimes at ms precision like
Mongo, Decimal128 amounts written with varying scale, nested subdocuments, embedded
arrays, Mixed ids that are sometimes free strings). The same seed gives the same
documents, byte for byte. `load_mongo(db, dataset)` inserts them.

The shape of every collection is documented in docs/domain.md.

Over 350 lines: one generator per collection of the reference domain, kept together so
the seed's order of draws is visible (changing it changes every planted key).
"""
from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bson import Decimal128, ObjectId

Document = dict[str, Any]

CURRENCIES = ("USD", "EUR", "GBP", "USDT", "ETH")
_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
_SPAN_MS = 300 * 24 * 3600 * 1000
_CITIES = (("Berlin", "DE"), ("Paris", "FR"), ("London", "GB"), ("Austin", "US"), ("Lisbon", "PT"), ("Warsaw", "PL"))
_FIRST = ("Ada", "Grace", "Linus", "Ken", "Barbara", "Edsger", "Frances", "Dennis", "Radia", "Tim")
_LAST = ("Lovelace", "Hopper", "Torvalds", "Thompson", "Liskov", "Dijkstra", "Allen", "Ritchie", "Perlman", "Lee")
_WORDS = ("Electronics", "Books", "Garden", "Toys", "Tools", "Music", "Sports", "Kitchen", "Office", "Health")
_TIMELINE_ACTIONS = ("opened", "evidence_added", "seller_responded", "escalated", "under_review", "resolved")


@dataclass(frozen=True)
class Dataset:
    """The generated documents, per Mongo collection, in insertion order."""

    seed: int
    scale: int
    collections: dict[str, list[Document]]

    def count(self) -> int:
        return sum(len(docs) for docs in self.collections.values())

    def by_id(self, collection: str) -> dict[str, Document]:
        """The documents of one collection keyed by their 24-hex `_id`."""
        return {str(doc["_id"]): doc for doc in self.collections[collection]}


class _Maker:
    """Random building blocks drawn from one seeded RNG (never the global one)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def instant(self, after: datetime | None = None, within_ms: int = _SPAN_MS) -> datetime:
        base = after or _EPOCH
        return base + timedelta(milliseconds=self.rng.randrange(1 if after else 0, within_ms))

    def object_id(self, at: datetime) -> ObjectId:
        return ObjectId(struct.pack(">I", int(at.timestamp())) + self.rng.randbytes(8))

    def amount(self) -> Decimal128:
        """A money amount as a Node client would have written it: varying scale."""
        rng = self.rng
        style = rng.randrange(10)
        cents = rng.randrange(1, 10_000_000)
        if style < 4:
            text = f"{cents // 100}.{cents % 100:02d}"  # "100.00", "12.50"
        elif style < 7:
            text = str(Decimal(cents).scaleb(-2).normalize())  # "12.5", "100" -> "1E+2" fixed below
            if "E" in text:
                text = str(cents // 100)
        elif style < 9:
            text = str(Decimal(rng.randrange(1, 10**21)).scaleb(-18))  # 18 decimals
        else:
            text = "0." + "0" * 17 + str(rng.randrange(1, 10))  # dust: 1e-18 .. 9e-18
        return Decimal128(text)

    def token(self, length: int) -> str:
        return self.rng.randbytes(length).hex()

    def pick(self, values: Sequence[Any]) -> Any:
        return values[self.rng.randrange(len(values))]


def generate(seed: int, scale: int) -> Dataset:
    """`scale` documents per collection, referentially consistent, from `seed`."""
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale!r}")
    make = _Maker(seed)
    users = _users(make, scale)
    addresses = _addresses(make, scale, users)
    categories = _categories(make, scale)
    requests = _purchase_requests(make, scale, users, addresses, categories)
    offers = _seller_offers(make, scale, users, requests)
    payments = _payments(make, scale, users, requests, offers)
    ledger = _ledger(make, scale, payments)
    disputes = _disputes(make, scale, payments)
    return Dataset(seed=seed, scale=scale, collections={
        "users": users, "addresses": addresses, "categories": categories,
        "purchaserequests": requests, "selleroffers": offers, "payments": payments,
        "fundsledgerentries": ledger, "disputes": disputes,
    })


def _stamped(make: _Maker) -> tuple[ObjectId, datetime, datetime]:
    created = make.instant()
    updated = created if make.rng.random() < 0.3 else make.instant(created, 30 * 24 * 3600 * 1000)
    return make.object_id(created), created, updated


def _users(make: _Maker, n: int) -> list[Document]:
    rng = make.rng
    users: list[Document] = []
    for i in range(n):
        oid, created, updated = _stamped(make)
        first, last = make.pick(_FIRST), make.pick(_LAST)
        role = "admin" if i % 10 == 9 else ("seller" if i % 2 else "buyer")
        profile: Document = {"firstName": first, "lastName": last}
        if rng.random() < 0.6:
            profile["phone"] = f"+49{rng.randrange(10**9, 10**10)}"
        user: Document = {"_id": oid}
        if rng.random() < 0.9:
            user["email"] = f"{first.lower()}.{last.lower()}.{i}@example.com"
        user.update({
            "password": "$2b$10$" + make.token(26),
            "name": f"{first} {last}",
            "role": role,
            "profile": profile,
        })
        if rng.random() < 0.7:
            user["referralCode"] = f"REF{i:06d}{make.token(2).upper()}"
        if i and rng.random() < 0.3:
            user["referredBy"] = users[rng.randrange(i)]["_id"]
        verified = rng.random() < 0.75
        user["isEmailVerified"] = verified
        if not verified:
            user["emailVerificationToken"] = make.token(16)
            user["emailVerificationExpires"] = make.instant(created, 48 * 3600 * 1000)
        user["passkeys"] = [
            {"credentialId": make.token(16), "publicKey": make.token(32),
             "counter": rng.randrange(0, 500), "createdAt": make.instant(created)}
            for _ in range(rng.randrange(3))
        ]
        tokens = []
        for _ in range(rng.randrange(4)):
            issued = make.instant(created)
            tokens.append({"token": make.token(24), "createdAt": issued,
                           "expiresAt": issued + timedelta(days=30)})
        user["refreshTokens"] = tokens
        user.update({"createdAt": created, "updatedAt": updated, "__v": len(tokens)})
        users.append(user)
    return users


def _addresses(make: _Maker, n: int, users: list[Document]) -> list[Document]:
    rng = make.rng
    has_primary: set[int] = set()
    addresses = []
    for _ in range(n):
        owner = rng.randrange(len(users))
        oid, created, updated = _stamped(make)
        city, country = make.pick(_CITIES)
        primary = owner not in has_primary and rng.random() < 0.6
        if primary:
            has_primary.add(owner)
        address: Document = {"_id": oid, "userId": users[owner]["_id"],
                             "label": make.pick(("Home", "Work", "Warehouse", "Other")),
                             "line1": f"{rng.randrange(1, 200)} {make.pick(_LAST)} Street"}
        if rng.random() < 0.3:
            address["line2"] = f"Apt {rng.randrange(1, 90)}"
        address.update({"city": city, "postalCode": f"{rng.randrange(10000, 99999)}", "country": country,
                        "isPrimary": primary, "createdAt": created, "updatedAt": updated, "__v": 0})
        addresses.append(address)
    return addresses


def _categories(make: _Maker, n: int) -> list[Document]:
    rng = make.rng
    categories: list[Document] = []
    for i in range(n):
        oid, created, updated = _stamped(make)
        name = f"{make.pick(_WORDS)} {i}"
        active = i < 2 or rng.random() < 0.85
        if not active and i and rng.random() < 0.5:
            # a soft-deleted duplicate of an active name, spelled differently
            name = f"  {categories[rng.randrange(i)]['name'].upper()} "
        roll = rng.random()
        parent: ObjectId | str | None
        if i and roll < 0.5:
            parent = categories[rng.randrange(i)]["_id"]
        elif roll < 0.65:
            parent = make.pick(("root", "template:catalog-v1", f"legacy-{rng.randrange(100)}"))
        else:
            parent = None
        categories.append({"_id": oid, "name": name, "slug": name.strip().lower().replace(" ", "-"),
                           "parentId": parent, "isActive": active,
                           "createdAt": created, "updatedAt": updated, "__v": 0})
    return categories


def _purchase_requests(make: _Maker, n: int, users: list[Document], addresses: list[Document],
                       categories: list[Document]) -> list[Document]:
    rng = make.rng
    sellers = [u["_id"] for u in users if u["role"] == "seller"] or [users[0]["_id"]]
    by_owner: dict[ObjectId, list[Document]] = {}
    for address in addresses:
        by_owner.setdefault(address["userId"], []).append(address)
    requests = []
    for i in range(n):
        oid, created, updated = _stamped(make)
        buyer = users[rng.randrange(len(users))]["_id"]
        request: Document = {"_id": oid, "buyerId": buyer,
                             "categoryId": make.pick(categories)["_id"] if rng.random() < 0.9 else None,
                             "title": f"Need {rng.randrange(1, 50)} x {make.pick(_WORDS).lower()} item #{i}"}
        if rng.random() < 0.7:
            request["description"] = f"Looking for a reliable seller ({make.token(4)})"
        request.update({
            "quantity": rng.randrange(1, 50),
            "budget": {"value": make.amount(), "currency": make.pick(CURRENCIES)},
            "status": make.pick(("open", "open", "in_progress", "completed", "cancelled")),
            "offers": [],
            "preferredSellerIds": rng.sample(sellers, min(len(sellers), rng.randrange(4))),
        })
        if rng.random() < 0.8:
            city, country = make.pick(_CITIES)
            delivery: Document = {}
            own = by_owner.get(buyer)
            if own and rng.random() < 0.7:
                chosen = make.pick(own)
                delivery["addressId"] = chosen["_id"]
                city, country = chosen["city"], chosen["country"]
            delivery.update({"city": city, "country": country})
            if rng.random() < 0.8:
                delivery["postalCode"] = f"{rng.randrange(10000, 99999)}"
            if rng.random() < 0.4:
                delivery["notes"] = make.pick(("Leave at the door", "Call before delivery", "Weekdays only"))
            if rng.random() < 0.5:
                delivery["preferredDate"] = make.instant(created, 60 * 24 * 3600 * 1000)
            request["deliveryInfo"] = delivery
        request.update({"createdAt": created, "updatedAt": updated, "__v": 0})
        requests.append(request)
    return requests


def _seller_offers(make: _Maker, n: int, users: list[Document], requests: list[Document]) -> list[Document]:
    rng = make.rng
    sellers = [u["_id"] for u in users if u["role"] == "seller"] or [users[0]["_id"]]
    offers = []
    for _ in range(n):
        oid, created, updated = _stamped(make)
        request = make.pick(requests)
        offer: Document = {"_id": oid, "sellerId": make.pick(sellers), "purchaseRequestId": request["_id"],
                           "price": {"value": make.amount(), "currency": request["budget"]["currency"]},
                           "deliveryDays": rng.randrange(1, 30)}
        if rng.random() < 0.6:
            offer["message"] = f"Can ship in {offer['deliveryDays']} days"
        offer.update({"status": make.pick(("pending", "pending", "accepted", "rejected", "withdrawn")),
                      "createdAt": created, "updatedAt": updated, "__v": 0})
        request["offers"].append(oid)
        offers.append(offer)
    return offers


def _payments(make: _Maker, n: int, users: list[Document], requests: list[Document],
              offers: list[Document]) -> list[Document]:
    rng = make.rng
    sellers = [u["_id"] for u in users if u["role"] == "seller"] or [users[0]["_id"]]
    offers_by_id = {o["_id"]: o for o in offers}
    payments = []
    for i in range(n):
        oid, created, updated = _stamped(make)
        request = make.pick(requests)
        # Mixed ids: ObjectId of an entity, or a free string from the template flow
        pr_ref: ObjectId | str = request["_id"] if rng.random() < 0.8 else f"template:pr-{make.token(3)}"
        offer_ref: ObjectId | str | None
        seller_ref: ObjectId | str | None
        if request["offers"] and rng.random() < 0.75:
            offer = offers_by_id[make.pick(request["offers"])]
            offer_ref, seller_ref = offer["_id"], offer["sellerId"]
        elif rng.random() < 0.5:
            offer_ref, seller_ref = f"template:offer-{make.token(3)}", f"template:seller-{make.token(3)}"
        else:
            offer_ref, seller_ref = None, make.pick(sellers) if rng.random() < 0.7 else None
        method = make.pick(("card", "card", "bank_transfer", "crypto", "wallet"))
        currency = "ETH" if method == "crypto" and rng.random() < 0.5 else request["budget"]["currency"]
        blockchain = None
        if method == "crypto":
            blockchain = {"network": make.pick(("ethereum", "polygon", "tron")), "txHash": "0x" + make.token(32),
                          "confirmations": rng.randrange(0, 64), "blockNumber": rng.randrange(10**7, 10**8)}
        metadata: Document = {"channel": make.pick(("web", "ios", "android")), "attempt": rng.randrange(1, 4)}
        if rng.random() < 0.5:
            metadata["tags"] = rng.sample(["first_purchase", "promo", "b2b", "gift"], rng.randrange(1, 3))
        if rng.random() < 0.3:
            metadata["client"] = {"ip": f"10.0.{rng.randrange(256)}.{rng.randrange(256)}", "ua": "Mozilla/5.0"}
        payments.append({
            "_id": oid, "buyerId": request["buyerId"], "purchaseRequestId": pr_ref,
            "sellerOfferId": offer_ref, "sellerId": seller_ref,
            "amount": {"value": make.amount(), "currency": currency},
            "status": make.pick(("pending", "processing", "completed", "completed", "failed", "refunded")),
            "method": method, "blockchain": blockchain, "metadata": metadata,
            "idempotencyKey": f"pay-{i}-{make.token(6)}",
            "createdAt": created, "updatedAt": updated, "__v": 0,
        })
    return payments


def _ledger(make: _Maker, n: int, payments: list[Document]) -> list[Document]:
    rng = make.rng
    entries = []
    for i in range(n):
        payment = make.pick(payments)
        created = make.instant(payment["createdAt"], 7 * 24 * 3600 * 1000)
        roll = rng.random()
        payment_ref: ObjectId | str | None = (
            payment["_id"] if roll < 0.8 else (f"template:payment-{make.token(3)}" if roll < 0.9 else None))
        entry: Document = {
            "_id": make.object_id(created), "userId": payment["buyerId"],
            "purchaseRequestId": payment["purchaseRequestId"] if rng.random() < 0.85 else None,
            "paymentId": payment_ref,
            "type": make.pick(("hold", "hold", "release", "refund", "fee", "payout")),
            "amount": {"value": make.amount(), "currency": payment["amount"]["currency"]},
            "balanceAfter": make.amount(),
        }
        if rng.random() < 0.8:
            entry["idempotencyKey"] = f"ledger-{i}-{make.token(6)}"
        if rng.random() < 0.5:
            entry["description"] = make.pick(("escrow hold", "release to seller", "platform fee", "refund to buyer"))
        entry.update({"createdAt": created, "__v": 0})
        entries.append(entry)
    return entries


def _disputes(make: _Maker, n: int, payments: list[Document]) -> list[Document]:
    rng = make.rng
    with_request = [p for p in payments if isinstance(p["purchaseRequestId"], ObjectId)] or payments[:1]
    disputes = []
    for _ in range(n):
        payment = make.pick(with_request)
        created = make.instant(payment["createdAt"], 20 * 24 * 3600 * 1000)
        buyer = payment["buyerId"]
        counterpart = payment["sellerId"] if isinstance(payment["sellerId"], ObjectId) else buyer
        status = make.pick(("open", "under_review", "resolved", "rejected"))
        evidence = []
        for _ in range(rng.randrange(4)):
            kind = make.pick(("image", "document", "text", "link"))
            item: Document = {"type": kind}
            if kind != "text":
                item["url"] = f"https://files.example.com/{make.token(6)}"
            item.update({"description": f"{kind} evidence {make.token(2)}",
                         "uploadedBy": make.pick([buyer, counterpart]),
                         "uploadedAt": make.instant(created, 5 * 24 * 3600 * 1000)})
            evidence.append(item)
        timeline = []
        at = created
        for action in _TIMELINE_ACTIONS[: rng.randrange(2, 6)]:
            step: Document = {"action": action,
                              "actorId": buyer if action == "opened" else make.pick([buyer, counterpart])}
            if rng.random() < 0.5:
                step["note"] = f"{action.replace('_', ' ')} ({make.token(2)})"
            step["at"] = at
            timeline.append(step)
            at = make.instant(at, 3 * 24 * 3600 * 1000)
        disputes.append({
            "_id": make.object_id(created),
            "purchaseRequestId": payment["purchaseRequestId"], "paymentId": payment["_id"],
            "openedBy": buyer,
            "reason": make.pick(("not_delivered", "not_as_described", "damaged", "fraud", "other")),
            "status": status,
            "resolution": f"refund {make.token(2)}" if status == "resolved" else None,
            "evidence": evidence, "timeline": timeline,
            "createdAt": created, "updatedAt": at, "__v": 0,
        })
    return disputes


async def load_mongo(db: Any, dataset: Dataset, chunk: int = 1000) -> dict[str, int]:
    """Insert every collection (PyMongo async database) in chunks; the counts inserted."""
    counts = {}
    for name, docs in dataset.collections.items():
        for start in range(0, len(docs), chunk):
            # copies: insert_many would otherwise hand the driver our frozen dataset's dicts
            await db[name].insert_many([dict(doc) for doc in docs[start:start + chunk]], ordered=False)
        counts[name] = len(docs)
    return counts
