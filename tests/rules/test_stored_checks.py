"""`stored:` (stored Mongo document -> API document) and `verify:` (filters, sums,
unique sets): good sections load into frozen specs; hostile ones are refused with
file:line; the stored view turns a stored document into the API's shape."""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from bson import Decimal128, ObjectId

from shadow.replay.sources.apijson import api_document
from shadow.rules import RulesError, load_rules

BASE = """\
entity: payment
collection: payments
table: payments
fields:
  _id: legacy_object_id
  status: status
  buyerId: {ref: buyer_id, to: users}
  amount: {object: {value: {column: amount, as: decimal}, currency: currency}}
  idempotencyKey: idempotency_key
  isActive: is_active
"""


def load(tmp_path: Path, extra: str) -> object:
    (tmp_path / "p.yaml").write_text(BASE + extra)
    return load_rules(tmp_path).entities["payment"]


def test_stored_and_verify_sections_load(tmp_path: Path) -> None:
    entity = load(tmp_path, """\
stored:
  version_key: v
  hidden: [secret]
  defaults: {isActive: true, flags: {a: 1}}
  rename: {_id: id}
verify:
  keep: {mongo: {deletedAt: null}, postgres: {deleted_at: null}}
  sums: [{sum: amount.value, by: [status, amount.currency]}]
  sets: [{name: pending_idem, of: [idempotencyKey], where: {status: pending}}]
""")
    stored, checks = entity.stored, entity.checks  # type: ignore[attr-defined]
    assert stored.version_key == "v" and stored.hidden == ("secret",) and dict(stored.rename) == {"_id": "id"}
    assert stored.defaults["flags"] == {"a": 1} and stored.stored_name("id") == "_id"
    assert dict(checks.keep_mongo) == {"deletedAt": None} and dict(checks.keep_postgres) == {"deleted_at": None}
    (total,) = checks.sums
    assert total.value.column == "amount" and [c.column for c in total.by] == ["status", "currency"]
    assert total.name == "sum_amount_by_status_by_currency"
    (unique,) = checks.sets
    assert unique.of[0].column == "idempotency_key" and unique.where[0][0].column == "status"


def test_stored_view_makes_the_api_shape() -> None:
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        entity = load(Path(folder), "stored: {defaults: {isActive: true}, rename: {_id: id}, hidden: [pin]}\n")
    oid = ObjectId()
    stored = {"_id": oid, "__v": 3, "pin": "1234", "amount": {"value": Decimal128("1.5"), "currency": "USD"},
              "createdAt": datetime(2026, 1, 2, 3, 4, 5, 678999, tzinfo=UTC)}
    shown = api_document(entity, stored)  # type: ignore[arg-type]
    assert shown == {"id": str(oid), "amount": {"value": {"$numberDecimal": "1.5"}, "currency": "USD"},
                     "createdAt": "2026-01-02T03:04:05.678Z", "isActive": True}
    assert api_document(entity, {"_id": oid, "isActive": None})["isActive"] is None  # type: ignore[arg-type]
    assert Decimal("1.5") == Decimal(shown["amount"]["value"]["$numberDecimal"])


@pytest.mark.parametrize(("extra", "message"), [
    ("stored: [1]\n", "'stored' must be a mapping"),
    ("stored: {bogus: 1}\n", "bogus"),
    ("stored: {odm: mongodb}\n", "'odm' must be one of none, mongoose"),
    ("stored: {odm: [mongoose]}\n", "'odm' must be one of none, mongoose"),
    ("stored: {version_key: 5}\n", "'version_key' must be a field name or null"),
    ("stored: {defaults: [a]}\n", "'defaults' must map field"),
    ("stored: {defaults: {$where: 1}}\n", "default field name must be a plain string"),
    ("stored: {rename: {a: x, b: x}}\n", "two fields renamed to 'x'"),
    ("stored: {rename: {a: [1]}}\n", "must be two field names"),
    ("verify: 3\n", "verify: must be a mapping"),
    ("verify: {sums: [{sum: nope}]}\n", "'nope' is not a field of the entity"),
    ("verify: {sums: [{sum: buyerId}]}\n", "must be a field rebuilt from a plain column (got ref)"),
    ("verify: {sums: [{sum: amount}]}\n", "(got object)"),
    ("verify: {sums: {sum: status}}\n", "'sums' must be a list"),
    ("verify: {sets: [{of: [status]}]}\n", "name"),
    ("verify: {sets: [{name: 'bad name', of: [status]}]}\n", "bad name"),
    ("verify: {keep: {postgres: {'x; drop': 1}}}\n", "keep.postgres takes column: scalar"),
    ("verify: {keep: {mongo: [1]}}\n", "keep.mongo must be a Mongo query"),
    ("verify: {keep: {other: 1}}\n", "other"),
])
def test_hostile_sections_are_refused_with_file_and_line(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(RulesError) as raised:
        load(tmp_path, extra)
    text = str(raised.value)
    assert message in text and "p.yaml:" in text, text


ARRAYS = """\
  tags: {rows: payment_tags, fk: payment_id, order_by: position, value: tag}
  extra: {object: {notes: {rows: payment_notes, fk: payment_id, order_by: position, value: note}}}
"""


def test_odm_mongoose_keeps_the_version_key_and_defaults_arrays(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(BASE.replace("  isActive: is_active\n", "  isActive: is_active\n" + ARRAYS)
                                     + "stored: {odm: mongoose}\n")
    entity = load_rules(tmp_path).entities["payment"]
    assert entity.stored.odm == "mongoose" and entity.stored.version_key is None
    oid = ObjectId()
    shown = api_document(entity, {"_id": oid, "__v": 2, "extra": {}})
    assert shown == {"_id": str(oid), "__v": 2, "tags": [], "extra": {"notes": []}}
    assert api_document(entity, {"_id": oid, "tags": ["a"]})["tags"] == ["a"]  # present: kept
    # a key written next to the preset wins over it
    (tmp_path / "p.yaml").write_text(BASE.replace("  isActive: is_active\n", "  isActive: is_active\n" + ARRAYS)
                                     + "stored: {odm: mongoose, version_key: __v, defaults: {tags: [x]}}\n")
    entity = load_rules(tmp_path).entities["payment"]
    assert api_document(entity, {"_id": oid, "__v": 2}) == {"_id": str(oid), "tags": ["x"]}


def test_without_a_preset_the_version_key_is_dropped(tmp_path: Path) -> None:
    entity = load(tmp_path, "")
    assert entity.stored.odm == "none" and entity.stored.version_key == "__v"  # type: ignore[attr-defined]
