"""The docs layer's fast paths say what the slow ones say: Decimal128 text without
bson's pure-Python conversion, and one hash for a document both stores hold alike."""
from __future__ import annotations

import random
from decimal import Decimal

import pytest
from bson import Decimal128

from shadow.replay.sources.apijson import decimal128_text
from shadow.verify.buckets import Bucket


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
