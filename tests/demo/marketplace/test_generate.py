"""The generator: deterministic, real BSON, referentially consistent, Mongo-faithful."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import bson
from bson import Decimal128, ObjectId
from bson.codec_options import CodecOptions

from shadow.demo.marketplace.generate import generate
from shadow.demo.marketplace.tojson import iso_ms, to_api


def test_same_seed_same_bytes_other_seed_other_data() -> None:
    first, again, other = generate(5, 30), generate(5, 30), generate(6, 30)
    encode = lambda data: [bson.encode(doc) for docs in data.collections.values() for doc in docs]  # noqa: E731
    assert encode(first) == encode(again)
    assert encode(first) != encode(other)
    assert {name: len(docs) for name, docs in first.collections.items()} == {
        name: 30 for name in ("users", "addresses", "categories", "purchaserequests", "selleroffers",
                              "payments", "fundsledgerentries", "disputes")}


def test_values_are_real_bson_at_mongo_precision() -> None:
    data = generate(1, 200)
    payments = data.collections["payments"]
    assert all(isinstance(p["_id"], ObjectId) and isinstance(p["amount"]["value"], Decimal128) for p in payments)
    texts = {str(p["amount"]["value"]) for p in payments}
    assert any(t.endswith(".00") for t in texts) and any("E-" in t or len(t.split(".")[-1]) == 18 for t in texts)
    assert any(len(t.split(".")[-1]) == 1 for t in texts if "." in t)  # "12.5"-style scale
    mixed = [p["purchaseRequestId"] for p in payments]
    assert any(isinstance(m, ObjectId) for m in mixed) and any(isinstance(m, str) for m in mixed)
    stamps = [p["createdAt"] for p in payments]
    assert all(s.tzinfo is UTC and s.microsecond % 1000 == 0 for s in stamps)
    # a BSON round trip (what Mongo stores) changes nothing
    options = CodecOptions(tz_aware=True)
    assert all(bson.decode(bson.encode(p), codec_options=options) == p for p in payments)


def test_references_resolve() -> None:
    data = generate(3, 60)
    ids = {name: set(data.by_id(name)) for name in data.collections}
    requests = data.by_id("purchaserequests")
    for offer in data.collections["selleroffers"]:
        assert offer["_id"] in requests[str(offer["purchaseRequestId"])]["offers"]
    for payment in data.collections["payments"]:
        assert str(payment["buyerId"]) in ids["users"]
        if isinstance(payment["purchaseRequestId"], ObjectId):
            assert str(payment["purchaseRequestId"]) in ids["purchaserequests"]
    for dispute in data.collections["disputes"]:
        assert len(dispute["timeline"]) >= 2
        assert [t["at"] for t in dispute["timeline"]] == sorted(t["at"] for t in dispute["timeline"])
    primaries = [a["userId"] for a in data.collections["addresses"] if a["isPrimary"]]
    assert len(primaries) == len(set(primaries))
    active = [c["name"].strip().lower() for c in data.collections["categories"] if c["isActive"]]
    assert len(active) == len(set(active))


def test_tojson_shape() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678999, tzinfo=UTC)
    assert iso_ms(moment) == "2026-01-02T03:04:05.678Z"
    user: dict[str, Any] = {"_id": ObjectId("0123456789abcdef01234567"), "password": "x", "refreshTokens": [],
                            "emailVerificationToken": "t", "emailVerificationExpires": moment, "__v": 3,
                            "passkeys": [{"createdAt": moment}], "referredBy": ObjectId("0123456789abcdef01234568")}
    assert to_api("users", user) == {"_id": "0123456789abcdef01234567",
                                     "passkeys": [{"createdAt": "2026-01-02T03:04:05.678Z"}],
                                     "referredBy": "0123456789abcdef01234568",
                                     "isEmailVerified": False}  # the schema default, filled as Mongoose does
    payment = {"amount": {"value": Decimal128("100.00"), "currency": "USD"}, "dust": Decimal128("0.000000000000000001"),
               "sellerId": "template:seller-1", "blockchain": None}
    assert to_api("payments", payment) == {"amount": {"value": {"$numberDecimal": "100.00"}, "currency": "USD"},
                                           "dust": {"$numberDecimal": "1E-18"},
                                           "sellerId": "template:seller-1", "blockchain": None}
