"""The compiled canonicalization plans (and the fast iso_ms / float paths) give exactly
what the plain reference walk gives: same values *and* same types (Decimal('1') == 1
would hide a change), on the marketplace's documents in both shapes and on odd values,
with `ignore` paths, `null_is_missing: false` and chained normalizers."""
from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import IntEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from bson import Decimal128, ObjectId

from normalizers.values import canonical_float, canonical_number, iso_ms
from shadow.compare.canonical import Flag, canonical
from shadow.compare.diff import compare
from shadow.demo.marketplace.generate import generate
from shadow.demo.marketplace.tojson import to_api
from shadow.model import Outcome
from shadow.rules import Entity, RuleSet, load_rules
from tests.compare.reference_canonical import _iso_ms, reference_canonical

RULES = Path(__file__).resolve().parents[2] / "rules" / "marketplace"
TODAY = date(2026, 11, 22)

ODD_RULES = """\
entity: things
collection: things
table: things
null_is_missing: {null_is_missing}
ignore: [secret, info.hidden, 'items[*].note', extra.deep.x, a.b, 'tags[*]']
fields:
  _id: legacy_object_id
  amount: {{column: amount, as: decimal}}
  at: {{column: at, as: timestamp}}
  code: {{column: code, as: [lower_trim, {{enum: {{usd: USD}}}}]}}
  both: {{column: both, as: [timestamp, decimal]}}
  tags: {{rows: tags, fk: thing_id, order: unordered, value: {{column: tag, as: lower_trim}}}}
  seq: {{rows: seq, fk: thing_id, order_by: position, value: position}}
  items: {{rows: items, fk: thing_id, order: unordered, key: sku,
          fields: {{sku: sku, qty: {{column: qty, as: decimal}}, note: note}}}}
  info: {{object: {{a: a, when: {{column: w, as: timestamp}}, hidden: h}}}}
  blob: {{json: blob}}
  extra: {{json: extra}}
"""


class Small(IntEnum):
    ONE = 1


class Text(str):
    pass


class Table(dict):
    pass


MOMENTS = [
    datetime(2025, 4, 28, 10, 59, 39, 874999, tzinfo=UTC),
    datetime(2025, 4, 28, 10, 59, 39),  # naive = UTC
    datetime(1, 1, 1, 0, 0, 0, 999),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2025, 4, 28, 23, 30, 0, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(2025, 4, 28, 0, 30, 0, 500, tzinfo=timezone(timedelta(hours=-8))),
    datetime(2025, 1, 15, 12, 0, 0, 1000, tzinfo=ZoneInfo("Europe/Paris")),
    datetime(2025, 1, 15, 12, 0, 0, tzinfo=timezone(timedelta(0))),  # zero offset, not timezone.utc
]

ODD_VALUES: list[Any] = [
    None, True, False, 0, -1, 2**53, 2**80, -(2**70), Small.ONE, Text("x"), "", " USD ", "usd",
    0.1, 1.0, -0.0, 1e23, 2.0**53, -(2.0**53) - 2, 1e-30, float("nan"), float("inf"), float("-inf"), 12.5,
    Decimal("1.000"), Decimal("1E+30"), Decimal("-0"), Decimal("NaN"), Decimal("12.500000000000000000"),
    Decimal("0.000000000000000001"), Decimal("Infinity"),
    *MOMENTS, date(2025, 4, 28), UUID("12345678-1234-5678-1234-567812345678"), b"\x00\xff",
    ObjectId("65a1b2c3d4e5f60718293a4b"), Decimal128("1200.50"), Flag(True),
    "2025-04-28T10:59:39.874Z", "2025-04-28 10:59:39.874999+02:00", "not a date", "1200.50",
    {}, {"$numberDecimal": "1200.50"}, {"$date": "2025-04-28T10:59:39Z"}, {"$date": {"$numberLong": "1"}},
    {"a": None, "b": {}, "c": [None, {}]}, Table(a=1), MappingProxyType({}), MappingProxyType({"a": 1}),
    [], [1, "1", 1.0, True, None], (1, 2), ("b", "A"), [[{"x": {"y": []}}]], {"deep": {"x": 1, "y": [1.5]}},
]


def typed(value: Any) -> Any:
    """A value with every node's type spelled out (so 1 and Decimal('1') differ)."""
    if isinstance(value, dict):
        return ("dict", [(name, typed(item)) for name, item in value.items()])
    if isinstance(value, list):
        return ("list", [typed(item) for item in value])
    if isinstance(value, Flag):
        return ("Flag", value.value)
    return (type(value).__name__, repr(value))


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(RULES)


def odd_entity(folder: Path, null_is_missing: bool) -> Entity:
    (folder / "things.yaml").write_text(textwrap.dedent(ODD_RULES.format(null_is_missing=str(null_is_missing).lower())))
    return load_rules(folder).entities["things"]


def assert_same(entity: Entity, document: Any) -> None:
    assert typed(canonical(entity, document)) == typed(reference_canonical(entity, document)), document


def rebuilt_shape(value: Any) -> Any:
    """An API document in the types a PostgreSQL rebuild holds (datetimes, Decimals)."""
    if isinstance(value, dict):
        if set(value) == {"$numberDecimal"}:
            return Decimal(value["$numberDecimal"])
        return {name: rebuilt_shape(item) for name, item in value.items()}
    if isinstance(value, list):
        return [rebuilt_shape(item) for item in value]
    if isinstance(value, str) and len(value) == 24 and value.endswith("Z") and value[10] == "T":
        return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)
    return value


def test_marketplace_documents_canonicalize_as_the_reference(rules: RuleSet) -> None:
    dataset = generate(7, 25)
    for entity in (e for e in rules.entities.values() if not e.view):
        for stored in dataset.collections.get(entity.collection, []):
            api = to_api(entity.collection, stored)
            for document in (api, rebuilt_shape(api), stored):  # the API's JSON, a rebuild, raw BSON
                assert_same(entity, document)
            assert compare(entity, api, rebuilt_shape(api), TODAY).outcome is Outcome.MATCH


@pytest.mark.parametrize("null_is_missing", [True, False])
def test_odd_values_in_every_field_canonicalize_as_the_reference(tmp_path: Path, null_is_missing: bool) -> None:
    entity = odd_entity(tmp_path, null_is_missing)
    names = ["amount", "at", "code", "both", "tags", "seq", "items", "info", "blob", "extra", "secret", "free"]
    for value in ODD_VALUES:
        for name in names:
            assert_same(entity, {"_id": "65a1b2c3d4e5f60718293a4b", name: value})
        assert_same(entity, {"tags": [value, "A"], "seq": [value], "items": [{"sku": value, "qty": value, "note": 1}, value],
                             "info": {"a": value, "when": value, "hidden": value, "other": {"hidden": value}},
                             "extra": {"deep": {"x": value, "y": value}, "x": value}, "a": {"b": value, "c": value},
                             1: value, (2, 3): value})
        assert_same(entity, [value, {"secret": value}])  # a document that is not an object
        assert_same(entity, value)


def test_fast_iso_ms_and_float_paths_equal_the_slow_ones() -> None:
    for moment in MOMENTS + [moment.replace(microsecond=micro) for moment in MOMENTS for micro in (0, 999, 1000, 999999)]:
        assert iso_ms(moment) == _iso_ms(moment), moment
    for number in [0.1, 1.0, -0.0, 1e23, 2.0**53, 2.0**53 - 1, -(2.0**53) + 1, 1e-300, 123456789.0, 5e-324, 1.7e308,
                   float("nan"), float("inf"), -12.5]:
        expected = canonical_number(Decimal(repr(number)))
        assert typed(canonical_float(number)) == typed(expected), number
