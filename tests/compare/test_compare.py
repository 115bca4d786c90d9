"""compare(): the "not a divergence" cases match, real divergences are found with
exactly their path, known divergences are suppressed until they expire."""
from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from shadow.compare.canonical import canonical
from shadow.compare.diff import compare
from shadow.compare.explain import explain
from shadow.model import Outcome
from shadow.rules import Entity, load_rules

RULES = """\
entity: purchase_request
collection: purchaserequests
table: purchase_requests
fields:
  _id: legacy_object_id
  title: title
  budget: {object: {value: {column: budget, as: decimal}, currency: budget_currency}}
  category: {column: category_name, as: lower_trim}
  offers:
    rows: purchase_request_offers
    fk: pr_id
    order: unordered
    key: offerId
    fields: {offerId: {ref: offer_id, to: selleroffers}, price: {column: price, as: decimal}, status: status}
  timeline: {rows: timeline, fk: pr_id, order_by: position, fields: {action: action, at: {column: at, as: timestamp}}}
  sellerIds: {rows: preferred, fk: pr_id, order: unordered, value: {ref: seller_id, to: users}}
  createdAt: {column: created_at, as: timestamp}
  note: note
ignore: [updatedAt, 'offers[*].updatedAt']
known:
  - {path: title, reason: "titles trimmed by the PG writer", expires: 2027-01-31}
"""
TODAY = date(2026, 11, 22)


@pytest.fixture(scope="module")
def entity(tmp_path_factory: pytest.TempPathFactory) -> Entity:
    folder: Path = tmp_path_factory.mktemp("rules")
    (folder / "pr.yaml").write_text(textwrap.dedent(RULES))
    return load_rules(folder).entities["purchase_request"]


def api_document() -> dict:
    return {
        "_id": "65a1b2c3d4e5f60718293a4b", "title": "Laptop",
        "budget": {"value": {"$numberDecimal": "1200.50"}, "currency": "USD"},
        "category": "Electronics",
        "offers": [{"offerId": "65a1b2c3d4e5f60718293a01", "price": {"$numberDecimal": "1100"}, "status": "pending",
                    "updatedAt": "2026-01-01T00:00:00.000Z"},
                   {"offerId": "65a1b2c3d4e5f60718293a02", "price": {"$numberDecimal": "1150.5"}, "status": "rejected"}],
        "timeline": [{"action": "opened", "at": "2026-01-01T10:00:00.123Z"},
                     {"action": "offer", "at": "2026-01-02T10:00:00.000Z"}],
        "sellerIds": ["65a1b2c3d4e5f60718293b01", "65a1b2c3d4e5f60718293b02"],
        "createdAt": "2026-01-01T10:00:00.123Z", "updatedAt": "2026-01-05T00:00:00.000Z",
        "note": None,
    }


def rebuilt_document() -> dict:
    """What the PostgreSQL source rebuilds for the same record: other spellings, same values."""
    return {
        "_id": "65a1b2c3d4e5f60718293a4b", "title": "Laptop",
        "budget": {"value": Decimal("1200.500000000000000000"), "currency": "USD"},
        "category": " electronics",
        "offers": [{"offerId": "65a1b2c3d4e5f60718293a02", "price": Decimal("1150.500000000000000000"), "status": "rejected"},
                   {"offerId": "65a1b2c3d4e5f60718293a01", "price": Decimal("1100.000000000000000000"), "status": "pending"}],
        "timeline": [{"action": "opened", "at": datetime(2026, 1, 1, 10, 0, 0, 123999, tzinfo=UTC)},
                     {"action": "offer", "at": datetime(2026, 1, 2, 10, 0, tzinfo=UTC)}],
        "sellerIds": ["65a1b2c3d4e5f60718293b02", "65a1b2c3d4e5f60718293b01"],
        "createdAt": datetime(2026, 1, 1, 10, 0, 0, 123456, tzinfo=UTC),
    }


def test_same_record_in_other_spellings_matches(entity: Entity) -> None:
    """Decimal scale, µs, time zones, null vs missing, multiset order, ignored paths."""
    verdict = compare(entity, api_document(), rebuilt_document(), TODAY)
    assert verdict.outcome is Outcome.MATCH and verdict.diffs == () and verdict.suppressed == ()
    assert explain(entity, api_document(), rebuilt_document()) == []


@pytest.mark.parametrize("change,path,at", [
    (lambda d: d["budget"].update(value=Decimal("1200.51")), "budget.value", "budget.value"),
    (lambda d: d["offers"][0].update(status="accepted"), "offers[*].status", "offers[1].status"),
    (lambda d: d["timeline"][1].update(at=datetime(2026, 1, 2, 10, 0, 0, 1000, tzinfo=UTC)), "timeline[*].at", "timeline[1].at"),
    (lambda d: d.pop("createdAt"), "createdAt", "createdAt"),
    (lambda d: d.update(note="surprise"), "note", "note"),
    (lambda d: d["sellerIds"].pop(), "sellerIds[*]", "sellerIds[0]"),  # index in the control's canonical order
    (lambda d: d["offers"].pop(), "offers[*]", "offers[0]"),
    (lambda d: d["timeline"][0].update(action="closed"), "timeline[*].action", "timeline[0].action"),
])
def test_a_divergence_is_found_at_exactly_its_path(entity: Entity, change, path: str, at: str) -> None:  # type: ignore[no-untyped-def]
    candidate = rebuilt_document()
    change(candidate)
    verdict = compare(entity, api_document(), candidate, TODAY)
    assert verdict.outcome is Outcome.MISMATCH
    assert {diff.path for diff in verdict.diffs} == {path}
    assert verdict.diffs[0].at == at
    assert {diff.path for diff in explain(entity, api_document(), candidate)} == {path}


def test_known_divergence_is_suppressed_until_it_expires(entity: Entity) -> None:
    candidate = rebuilt_document() | {"title": "Laptop "}
    verdict = compare(entity, api_document(), candidate, TODAY)
    assert verdict.outcome is Outcome.MATCH and [diff.path for diff in verdict.suppressed] == ["title"]
    expired = compare(entity, api_document(), candidate, date(2027, 2, 1))
    assert expired.outcome is Outcome.MISMATCH and [diff.path for diff in expired.diffs] == ["title"]


def test_missing_row_and_type_changes(entity: Entity) -> None:
    assert compare(entity, api_document(), None, TODAY).outcome is Outcome.MISSING
    candidate = rebuilt_document() | {"budget": "1200.50"}
    [diff] = compare(entity, api_document(), candidate, TODAY).diffs
    assert (diff.path, diff.kind, diff.control) == ("budget", "type", {"value": "1200.5", "currency": "USD"})


def test_unreadable_values_are_a_mismatch_not_a_crash(entity: Entity) -> None:
    candidate = rebuilt_document()
    candidate["budget"]["value"] = "not a number"
    verdict = compare(entity, api_document(), candidate, TODAY)
    assert [diff.path for diff in verdict.diffs] == ["budget.value"]


def test_canonical_form_is_json_ready_and_stable(entity: Entity) -> None:
    once = canonical(entity, rebuilt_document())
    assert canonical(entity, once) == once
    assert once["createdAt"] == "2026-01-01T10:00:00.123Z" and once["budget"]["value"] == Decimal("1200.5")
