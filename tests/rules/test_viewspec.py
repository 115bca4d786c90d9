"""The view-model parts of the rule format (issue 12): the block docs/rules.md shows loads
as documented, and every bad spelling is refused with file:line and what is wrong."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from shadow.rules import RulesError, load_rules
from shadow.rules.spec import NO_ABSENT, Condition, Lookup

DOCS = Path(__file__).resolve().parents[2] / "docs" / "rules.md"


def docs_block() -> str:
    text = DOCS.read_text()
    section = text[text.index("### View models on one screen"):]
    return re.search(r"```yaml\n(.*?)```", section, re.DOTALL).group(1)  # type: ignore[union-attr]


def test_the_documented_view_model_block_loads_as_described(tmp_path: Path) -> None:
    (tmp_path / "views.yaml").write_text(docs_block())
    rules = load_rules(tmp_path)
    entity = rules.entities["purchase_request_views"]
    assert entity.view and entity.id_field == "id" and entity.unverifiable == ("recommendedFor",)
    fields = entity.fields
    assert fields["offersCount"].kind == "count" and fields["offersCount"].where == (Condition("pr_id", "key"),)
    assert fields["paid"].of == "amount" and fields["paid"].where[1] == Condition("status", "value", "paid")
    assert fields["isMine"].where == (Condition("id", "key"), Condition("buyer_id", "reader"))
    assert fields["verified"].absent is False and fields["createdAt"].absent is NO_ABSENT
    assert [path for path, _ in fields["chain"].json_paths] == ["confirmedAt", "fees[*].amount"]
    listing = rules.route_named("GET /api/views/users/{id}/purchase-requests")
    assert listing is not None and listing.reader is not None and listing.page is not None
    assert listing.reader.lookup == Lookup("users") and listing.reader.claim == "id"
    assert [(f.column, f.query, f.op) for f in listing.where] == [
        ("buyer_id", None, "eq"), ("status", "status", "in"), ("created_at", "since", "gte")]
    assert listing.page.order_by == (("created_at", True), ("legacy_object_id", False))
    assert (listing.page.limit, listing.page.limit_default, listing.page.offset, listing.page.total) == \
        ("limit", 20, "offset", ("total",))
    single = rules.route_named("GET /api/views/purchase-requests/{id}")
    assert single is not None and single.key_normalize == ("trim", "lower")


BAD = {
    "aggregate without a parent column": ("{count: purchase_request_offers, fk: pr_id}", "{count: purchase_request_offers}",
                                          "needs exactly one column tied to the parent row"),
    "two parent columns": ("{count: purchase_request_offers, fk: pr_id}",
                           "{count: purchase_request_offers, fk: pr_id, where: {x: key}}", "(got 2)"),
    "sum without of": ("fk: pr_id, of: amount,", "fk: pr_id,", "'of: <column>' is required for sum"),
    "of on a count": ("{count: purchase_request_offers, fk: pr_id}", "{count: purchase_request_offers, fk: pr_id, of: x}",
                      "'of: <column>' is only allowed for sum"),
    "bad where value": ("where: {status: paid}", "where: {status: [paid]}", "must be key, reader, a constant"),
    "bad where column": ("where: {status: paid}", "where: {'st atus': paid}", "'where' key must be a column name"),
    "reader field without a reader": ("    reader: {header: Authorization, jwt_claim: id, to: users}   # claim read, NOT verified\n",
                                      "", "depends on the reader"),
    "reader without a claim": ("reader: {header: Authorization, jwt_claim: id, to: users}   #",
                               "reader: {header: Authorization, to: users}   #", "missing required key 'jwt_claim'"),
    "unknown op": ("{query: status, op: in}", "{query: status, op: like}", "'op' must be one of eq, in, gt"),
    "two value sources": ("{query: status, op: in}", "{query: status, value: x}", "exactly one of 'param', 'query', 'value' or 'reader'"),
    "by without to": ("{param: id, to: users}", "{param: id, by: slug}", "'by' needs 'to: <table>'"),
    "page without order": ("    order_by: [created_at desc, legacy_object_id]  # the API's order: checked\n", "",
                           "a page (limit/offset/page) needs 'order_by'"),
    "bad order direction": ("[created_at desc, legacy_object_id]", "[created_at sideways, legacy_object_id]",
                            "order_by entries are 'column [asc|desc]'"),
    "negative limit default": ("{query: limit, default: 20}", "{query: limit, default: -1}", "limit default must be a whole number"),
    "unknown key normalizer": ("normalize: [trim, lower]}", "normalize: [trim, upper]}", "key normalize takes lower, trim"),
    "empty const key": ("key: {path: id, normalize: [trim, lower]}", "key: {const: ''}", "key const must be a non-empty string"),
    "absent on an object": ("  createdAt: {column: created_at, as: timestamp}\n",
                            "  createdAt: {object: {a: b}, absent: 1}\n", "unknown key 'absent'"),
    "bad json path": ("{confirmedAt: timestamp,", "{'a..b': timestamp,", "bad path inside json"),
    "unknown normalizer in a json path": ("{confirmedAt: timestamp,", "{confirmedAt: timestampp,", "unknown normalizer"),
    "page on a single route": ("  - route: GET /api/views/purchase-requests/{id}\n",
                               "  - route: GET /api/views/purchase-requests/{id}\n    total: n\n", "are for list routes"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_view_model_rules_fail_with_file_and_line(tmp_path: Path, case: str) -> None:
    old, new, message = BAD[case]
    good = docs_block()
    assert old in good, case
    path = tmp_path / "views.yaml"
    path.write_text(good.replace(old, new, 1))
    with pytest.raises(RulesError) as caught:
        load_rules(tmp_path)
    text = str(caught.value)
    assert message in text, text
    assert all(issue.file == str(path) and issue.line > 0 for issue in caught.value.issues)


def test_several_documents_in_one_file_are_not_mistaken_for_aliases(tmp_path: Path) -> None:
    """A node id of a freed earlier document may be reused by the next one: not an alias."""
    one = "entity: e{n}\ncollection: c{n}\ntable: t{n}\nfields: {{_id: legacy_object_id, name: name}}\n"
    (tmp_path / "many.yaml").write_text("---\n".join(one.format(n=n) for n in range(30)))
    assert len(load_rules(tmp_path).entities) == 30
