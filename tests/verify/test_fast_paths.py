"""The docs layer's fast paths say what the slow ones say: Decimal128 text without
bson's pure-Python conversion, one hash for a document both stores hold alike, and a
stored document's canonical form in one walk (no API-shaped copy)."""
from __future__ import annotations

import gc
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from bson import Binary, Code, Decimal128, Int64, MinKey, ObjectId, Regex, Timestamp

from shadow.compare.canonical import canonical
from shadow.demo.marketplace.generate import generate
from shadow.replay.sources.apijson import api_document, decimal128_text
from shadow.rules import load_rules
from shadow.rules.spec import Entity
from shadow.verify.buckets import Bucket, document_hash
from shadow.verify.collector import THRESHOLDS, fewer_collections
from shadow.verify.storedcanon import stored_canonical


@pytest.mark.parametrize("text", ["0", "-0", "12.50", "1E+10", "-1.000000000000000001", "NaN", "-NaN", "Infinity",
                                  "-Infinity", "0E-6176", "9.999999999999999999999999999999999E+6144", "1E-6143",
                                  "-0.00", "123456789012345678901234567890.1234"])
def test_decimal128_text_is_str(text: str) -> None:
    value = Decimal128(text)
    assert decimal128_text(value) == str(value)


def test_decimal128_text_is_str_for_many_values() -> None:
    rng = random.Random(5)
    for _ in range(5000):
        value = Decimal128(Decimal(rng.randrange(-10**33, 10**33)).scaleb(rng.randrange(-60, 40)))
        assert decimal128_text(value) == str(value)


def test_a_document_held_alike_adds_the_same_to_both_digests() -> None:
    once, twice = Bucket(), Bucket()
    document = {"a": Decimal("1.5"), "b": [1, "x"]}
    once.add_both("k", document)
    twice.add_mongo("k", document)
    twice.add_pg("k", document)
    assert once.as_json() == twice.as_json()
    assert once.as_json()["mongo"] == once.as_json()["postgres"]


# ------------------------------------------------ a stored document's canonical form in one walk

_HOSTILE_VALUES = [  # what a stored field may hold, whatever its rule says
    None, True, False, 0, -1, 2**63 - 1, Int64(7), 1.5, 0.1, float("nan"), float("inf"), -0.0, 1e300, "", "x",
    "2025-01-02T03:04:05.678Z", "2025-01-02T03:04:05Z", "not a date", "12.50", ObjectId("5f0000000000000000000001"),
    datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), datetime(2025, 1, 2, 3, 4, 5, 678901),
    datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    *(Decimal128(text) for text in ["0", "-0", "12.50", "1E+10", "NaN", "-Infinity", "0E-6176", "1E-6143",
                                    "9.999999999999999999999999999999999E+6144", "-0.00", "100", "1.000"]),
    {}, {"$numberDecimal": "1.5"}, {"$numberDecimal": 3}, {"value": Decimal128("2.50"), "currency": None},
    {"value": None}, {"a": {"b": {}}}, {"id": ObjectId("5f0000000000000000000002"), "at": datetime(2020, 1, 1)},
    [], [None, {}, 1, "a"], [ObjectId("5f0000000000000000000003"), Decimal128("7.0")], (1, 2), b"\x00\xff",
    uuid.UUID(int=5), Binary(b"abc", 0), Regex("^a"), Timestamp(1, 2), MinKey(), Code("x"),
]


def _entities() -> list[Entity]:
    rules = load_rules(Path(__file__).resolve().parents[2] / "rules" / "marketplace")
    return list(rules.entities.values())


@pytest.mark.parametrize("entity", _entities(), ids=lambda entity: entity.name)
def test_stored_canonical_is_api_shape_then_canonical(entity: Entity) -> None:
    """Every generated document, then each of its fields (and an unknown one, and the
    version key) given each hostile value: one walk gives what the two steps give, and
    the same digest."""
    dataset = generate(3, 20)
    documents = dataset.collections.get(entity.collection) or [{"_id": ObjectId()}]
    checked = 0
    for document in documents[:40]:
        variants = [document]
        for name in [*list(document)[:12], "unknownField", "__v"]:
            variants.extend({**document, name: value} for value in _HOSTILE_VALUES)
        for variant in variants:
            expected = canonical(entity, api_document(entity, variant))
            found = stored_canonical(entity, variant)
            assert found == expected, (variant, found, expected)
            assert document_hash("k", found) == document_hash("k", expected)
            checked += 1
    assert checked > 0


def test_the_collector_thresholds_come_back_after_layers_nested_or_not() -> None:
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold() == THRESHOLDS
        with fewer_collections():
            pass
        assert gc.get_threshold() == THRESHOLDS  # the inner layer ended, the outer still runs
    assert gc.get_threshold() == before


def test_a_digest_takes_integers_beyond_64_bits() -> None:
    """A large integral decimal (1E+30) is an int in the canonical form: orjson refuses
    it; the digest must still be made, and tell two such values apart."""
    assert document_hash("k", {"amount": {"value": 10**30}}) != document_hash("k", {"amount": {"value": 10**30 + 1}})
    assert document_hash("k", {"v": [2**64]}) != document_hash("k", {"v": [str(2**64)]})


def test_a_remembered_decimal128_gives_what_a_fresh_one_does() -> None:
    """A stored `as: decimal` field remembers the canonical number of each Decimal128 it
    read (amounts repeat): a value seen before gives what the two steps give, and equal
    values of another scale keep their own (equal) form."""
    payments = load_rules(Path(__file__).resolve().parents[2] / "rules" / "marketplace").entities["payments"]
    texts = ["12.50", "12.5", "12.500000000000000000", "1E+2", "100", "-0", "0.000", "0E-6176", "1E-6143",
             "9.999999999999999999999999999999999E+6144", "NaN", "-Infinity", "1234567890123456789012345678901234"]
    for _ in range(2):  # the second round reads what the first remembered
        for text in texts:
            document = {"_id": ObjectId("5f0000000000000000000001"),
                        "amount": {"value": Decimal128(text), "currency": "EUR"}}
            stored = stored_canonical(payments, document)
            shaped = canonical(payments, api_document(payments, document))
            assert stored == shaped, text
            assert document_hash("k", stored) == document_hash("k", shaped), text
