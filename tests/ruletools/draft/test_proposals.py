"""One test per kind of proposal, on the drafted marketplace (tests/ruletools/draft/conftest.py):
what the rule says and the reason written next to it."""
from __future__ import annotations

from pathlib import Path

from shadow.rules import load_rules
from tests.ruletools.draft.conftest import Drafted


def line_of(text: str, start: str) -> str:
    return next(line.strip() for line in text.splitlines() if line.strip().startswith(start))


def test_child_rows_and_1to1_child_tables(drafted: Drafted) -> None:
    rules = load_rules(drafted.out)
    evidence = rules.entities["disputes"].fields["evidence"]
    assert (evidence.kind, evidence.table, evidence.fk, evidence.order_by) == ("rows", "dispute_evidence",
                                                                              "dispute_id", ("position",))
    assert [f.name for f in evidence.fields] == ["type", "url", "description", "uploadedBy", "uploadedAt"]
    assert "array of subdocuments <- child table dispute_evidence (FK dispute_id), ordered by position" in \
        line_of(drafted.text("disputes"), "evidence:")
    delivery = rules.entities["purchase_requests"].fields["deliveryInfo"]
    assert (delivery.kind, delivery.table, delivery.fk) == ("child", "pr_delivery_info", "pr_id")
    assert "1:1 child table pr_delivery_info (FK pr_id unique)" in line_of(drafted.text("purchase_requests"),
                                                                           "deliveryInfo:")


def test_junction_tables_from_arrays_of_ids(drafted: Drafted) -> None:
    offers = load_rules(drafted.out).entities["purchase_requests"].fields["offers"]
    assert (offers.kind, offers.table, offers.fk, offers.unordered) == ("rows", "purchase_request_offers", "pr_id", True)
    assert offers.value is not None and (offers.value.kind, offers.value.column, offers.value.to) == (
        "ref", "offer_id", "selleroffers")
    reason = line_of(drafted.text("purchase_requests"), "offers:")
    assert "array of ids <- junction table purchase_request_offers (FK pr_id), a set" in reason
    assert "use order_by: position if the API's order matters" in reason


def test_references_resolved_through_id_map(drafted: Drafted) -> None:
    field = load_rules(drafted.out).entities["disputes"].fields["openedBy"]
    assert (field.kind, field.column, field.to) == ("ref", "opened_by", "users")
    assert "sampled ids found in id_map under 'users', FK to users" in line_of(drafted.text("disputes"), "openedBy:")


def test_polymorphic_ids(drafted: Drafted) -> None:
    payments = load_rules(drafted.out).entities["payments"]
    assert {(name, payments.fields[name].column, payments.fields[name].to)
            for name in ("purchaseRequestId", "sellerOfferId", "sellerId")} == {
        ("purchaseRequestId", "purchase_request", "purchaserequests"),
        ("sellerOfferId", "seller_offer", "selleroffers"), ("sellerId", "seller", "users")}
    assert all(payments.fields[name].kind == "mixed" for name in ("purchaseRequestId", "sellerOfferId", "sellerId"))
    assert ("polymorphic id (ObjectIds and strings seen) <- seller_ref_kind/_id/_external_ref"
            in line_of(drafted.text("payments"), "sellerId:"))


def test_normalizers_for_decimals_and_dates(drafted: Drafted) -> None:
    rules = load_rules(drafted.out)
    ledger = rules.entities["funds_ledger_entries"]
    assert [t.name for t in ledger.fields["balanceAfter"].transforms] == ["decimal"]
    assert "Decimal128 vs unconstrained numeric: compared by value, not scale" in line_of(
        drafted.text("funds_ledger_entries"), "balanceAfter:")
    budget = rules.entities["purchase_requests"].fields["budget"].children["value"]
    assert (budget.column, [t.name for t in budget.transforms]) == ("budget", ["decimal"])
    assert "numeric scale 18" in line_of(drafted.text("purchase_requests"), "value:")
    at = rules.entities["disputes"].fields["timeline"].children["at"]
    assert [t.name for t in at.transforms] == ["timestamp"]
    assert "dates are ms in Mongo, µs (precision 6) in PostgreSQL" in line_of(drafted.text("disputes"), "at:")


def test_stored_version_key(drafted: Drafted) -> None:
    users = load_rules(drafted.out).entities["users"]
    assert users.stored.version_key == "__v"
    assert "__v: in 20 of 20 sampled, no column: Mongoose's version key, dropped" in drafted.text("users")


def test_routes_from_recorded_answers(drafted: Drafted) -> None:
    rules = load_rules(drafted.out)
    single = rules.route_named("GET /api/users/{id}")
    assert single is not None and single.entity == "users" and not single.is_list
    listing = rules.route_named("GET /api/users/{id}/addresses")
    assert listing is not None and listing.entity == "addresses" and listing.is_list and listing.at == ("data",)
    assert [(w.column, w.param, w.to) for w in listing.where] == [("user_id", "id", "users")]
    assert "3 recorded answer(s); a list at data" in line_of(drafted.text("addresses"), "- route: GET /api/users/")
    categories = rules.route_named("GET /api/categories")
    assert categories is not None and categories.is_list and categories.where == ()
    # the API never showed these stored fields in 4 answers: hidden by its serializer?
    head = drafted.text("users").partition("entity: users")[0]
    for hidden in ("refreshTokens", "emailVerificationToken", "emailVerificationExpires"):
        assert f"users.{hidden}: in the stored documents but in none of 4 recorded answers" in head


def test_view_models_from_recorded_answers(drafted: Drafted) -> None:
    """Answers keyed by `id` are a view model: the stored entity's fields it shows are
    reused, the rest declared unverifiable with a hint of what could rebuild them."""
    views = load_rules(drafted.out).entities["purchase_requests_views"]
    assert (views.view, views.id_field, views.table) == (True, "id", "purchase_requests")
    assert {"id", "title", "status", "createdAt"} <= set(views.fields)
    assert set(views.unverifiable) == {"buyer", "offersCount", "isMine", "offeredByMe"}
    text = drafted.text("purchase_requests_views")
    assert "an aggregate candidate: {count: purchase_request_offers, fk: pr_id}" in line_of(text, "- offersCount")
    assert "{child: users, fk: id, parent: buyer_id, fields: …}" in line_of(text, "- buyer ")
    assert "a per-reader or computed flag" in line_of(text, "- isMine")
    rules = load_rules(drafted.out)
    single = rules.route_named("GET /api/views/purchase-requests/{id}")
    listing = rules.route_named("GET /api/views/users/{id}/purchase-requests")
    assert single is not None and single.entity == "purchase_requests_views"
    assert listing is not None and listing.is_list and [(w.column, w.to) for w in listing.where] == [
        ("buyer_id", "users")]
    assert "a list view — if it is paged or sorted, add order_by / limit / offset / total by hand" in text


def test_unique_indexes_become_verify_set_candidates(drafted: Drafted, tmp_path: Path) -> None:
    """Written as comments; uncommented, they are the shipped rules' sets (partial index
    predicate included)."""
    text = drafted.text("payments")
    assert "#     - {name: payments_pending_idempotency_key, of: [idempotencyKey], where: {status: pending}}" in text
    (tmp_path / "payments.yaml").write_text(text.replace("# verify:", "verify:").replace("#   sets:", "  sets:")
                                            .replace("#     - {name:", "    - {name:"))
    payments = load_rules(tmp_path).entities["payments"]
    assert payments.checks is not None
    (pending,) = payments.checks.sets
    assert ([c.path for c in pending.of], [(c.path, v) for c, v in pending.where]) == (
        ["idempotencyKey"], [("status", "pending")])
