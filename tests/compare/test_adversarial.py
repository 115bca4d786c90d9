"""compare() takes whatever the API sent: odd shapes and values give a verdict, not a crash."""
from __future__ import annotations

import math
import textwrap
from datetime import date
from decimal import Decimal

import pytest

from shadow.compare.diff import compare
from shadow.compare.explain import explain
from shadow.model import Outcome
from shadow.rules import Entity, load_rules

RULES = """\
entity: things
collection: things
table: things
fields:
  _id: legacy_object_id
  amount: {column: amount, as: decimal}
  at: {column: at, as: timestamp}
  tags: {rows: tags, fk: thing_id, order: unordered, value: tag}
  items: {rows: items, fk: thing_id, order: unordered, key: sku, fields: {sku: sku, qty: qty}}
  info: {object: {a: a}}
"""
TODAY = date(2026, 11, 22)


@pytest.fixture(scope="module")
def entity(tmp_path_factory: pytest.TempPathFactory) -> Entity:
    folder = tmp_path_factory.mktemp("rules")
    (folder / "things.yaml").write_text(textwrap.dedent(RULES))
    return load_rules(folder).entities["things"]


ODD = [
    {"tags": [2**80, "x", None, 1.5, {"k": [1]}, True]},          # huge int, mixed types in a multiset
    {"items": ["not an object", {"sku": None}, {"qty": 1}]},
    {"items": {"sku": "a"}},                                       # object where a list belongs
    {"info": [1, 2]},                                              # list where an object belongs
    {"amount": {"$numberDecimal": "NaN"}}, {"amount": float("nan")}, {"amount": "abc"},
    {"amount": [1]}, {"at": "not a date"}, {"at": 10**30}, {"at": {"$date": "x"}},
    {"deep": {"a": {"b": {"c": [[[[{"d": 1}]]]]}}}},
    {"tags": [Decimal("1E+30"), 10**30]},
]


@pytest.mark.parametrize("odd", ODD, ids=[str(i) for i in range(len(ODD))])
def test_odd_documents_give_a_verdict(entity: Entity, odd: dict) -> None:
    plain = {"_id": "65a1b2c3d4e5f60718293a4b", "amount": "1", "tags": ["a"]}
    for control, candidate in ((plain | odd, plain), (plain, plain | odd), (plain | odd, plain | odd)):
        verdict = compare(entity, control, candidate, TODAY)
        assert verdict.outcome in (Outcome.MATCH, Outcome.MISMATCH)
        explain(entity, control, candidate)


def test_nan_never_matches_a_number_but_matches_its_own_spelling(entity: Entity) -> None:
    control = {"amount": {"$numberDecimal": "NaN"}}
    assert compare(entity, control, {"amount": Decimal("NaN")}, TODAY).outcome is Outcome.MATCH
    assert compare(entity, control, {"amount": 0}, TODAY).outcome is Outcome.MISMATCH
    assert math.isnan(float("nan"))


def test_huge_numbers_compare_exactly(entity: Entity) -> None:
    control = {"tags": [10**30, 2**70]}
    assert compare(entity, control, {"tags": [Decimal(2**70), Decimal("1E+30")]}, TODAY).outcome is Outcome.MATCH
    assert compare(entity, control, {"tags": [Decimal(2**70), Decimal("1000000000000000000000000000001")]},
                   TODAY).outcome is Outcome.MISMATCH


def test_38_digit_amounts_are_not_rounded(entity: Entity) -> None:
    """numeric(38,18) holds 38 digits; Python's default Decimal context only 28."""
    big = "12345678901234567890.123456789012345678"
    control = {"amount": {"$numberDecimal": big}}
    assert compare(entity, control, {"amount": Decimal(big + "000")}, TODAY).outcome is Outcome.MATCH
    off = compare(entity, control, {"amount": Decimal("12345678901234567890.123456789012345679")}, TODAY)
    assert [diff.path for diff in off.diffs] == ["amount"]


def test_booleans_never_equal_numbers(entity: Entity) -> None:
    control = {"flag": True, "tags": [True, 0]}
    verdict = compare(entity, control, {"flag": 1, "tags": [False, 1]}, TODAY)
    assert verdict.outcome is Outcome.MISMATCH
    assert ("flag", "type", True, 1) in [(d.path, d.kind, d.control, d.candidate) for d in verdict.diffs]
    assert compare(entity, control, {"flag": True, "tags": [0, True]}, TODAY).outcome is Outcome.MATCH
