"""Loading rule files: a good directory gives frozen entities and routes; every kind of
bad file is refused with its file:line and the bad value."""
from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path

import pytest

from shadow.rules import RulesError, load_rules

GOOD = """\
entity: payment
collection: payments
table: payments
fields:
  _id: legacy_object_id
  status: status
  buyerId: {ref: buyer_id, to: users}
  sellerId: {mixed: seller, to: users}
  amount: {object: {value: {column: amount, as: decimal}, currency: currency}}
  metadata: {json: metadata}
  tags: {rows: payment_tags, fk: payment_id, order: unordered, value: tag}
  createdAt: {column: created_at, as: timestamp}
routes:
  - GET /api/payments/{id}
  - route: GET /api/users/{userId}/payments
    list: true
    complete: true
    at: data.items
    where: {buyer_id: {param: userId, to: users}}
    sample: 0.25
    sample_by: key
    recheck: 500ms
ignore: [updatedAt]
redact: [metadata.cardLast4]
known:
  - {path: metadata.note, reason: "PG drops notes", expires: 2027-01-31}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_good_rules_load_into_frozen_entities_and_routes(tmp_path: Path) -> None:
    write(tmp_path, "payments.yaml", GOOD)
    write(tmp_path, "tests/cases.yaml", "not: [a rule")  # the tests/ folder is not rules
    write(tmp_path, "README.md", "ignored")
    rules = load_rules(tmp_path)
    payment = rules.entities["payment"]
    assert payment.table == "payments" and payment.key == "legacy_object_id"
    assert payment.fields["buyerId"].kind == "ref" and payment.fields["buyerId"].to == "users"
    assert payment.fields["amount"].children["value"].transforms[0].name == "decimal"
    assert payment.ignore == ("updatedAt",) and payment.redact == ("metadata.cardLast4",)
    assert payment.known[0].expires == date(2027, 1, 31)
    single, listing = rules.routes
    assert (single.name, single.key.kind, single.key.name, single.recheck.after, single.sample) == (
        "GET /api/payments/{id}", "path", "id", (2.0,), 1.0)
    assert listing.is_list and listing.complete and listing.at == ("data", "items")
    assert (listing.sample, listing.sample_by, listing.recheck.after) == (0.25, "key", (0.5,))
    assert single.recheck.control == listing.recheck.control == "upstream" and single.recheck.headers == ()
    assert listing.where[0].column == "buyer_id" and listing.where[0].to == "users"
    assert len(rules.version) == 12
    with pytest.raises(AttributeError):
        payment.table = "other"  # type: ignore[misc]


def test_version_changes_with_the_files(tmp_path: Path) -> None:
    path = write(tmp_path, "payments.yaml", GOOD)
    before = load_rules(tmp_path).version
    path.write_text(GOOD.replace("0.25", "0.5"))
    assert load_rules(tmp_path).version != before


BAD = {
    "unknown key": ("  status: status\n", "  status: {column: status, defualt: x}\n",
                    ":6: ", "unknown key 'defualt' in field 'status'"),
    "unknown top-level key": ("ignore: [updatedAt]\n", "ignores: [updatedAt]\n",
                              ":23: ", "unknown key 'ignores' in entity 'payment'"),
    "wrong type": ("    sample: 0.25\n", "    sample: often\n", ":20: ", "'sample' must be a number from 0 to 1, got str 'often'"),
    "wrong type of field": ("  status: status\n", "  status: [status]\n", ":6: ", "must be a column name or a mapping"),
    "unknown normalizer": ("as: decimal}", "as: decimall}", ":9: ", "unknown normalizer 'decimall'"),
    "bad path template": ("GET /api/payments/{id}", "GET /api/payments/{id", ":14: ", "bad path template"),
    "bad method": ("GET /api/payments/{id}", "FETCH /api/payments/{id}", ":14: ", "unknown method 'FETCH'"),
    "rows without order": ("order: unordered, ", "", ":11: ", "order_by: <column>' or 'order: unordered'"),
    "ref without to": ("{ref: buyer_id, to: users}", "{ref: buyer_id}", ":7: ", "ref needs 'to: <collection>'"),
    "bad expiry": ("expires: 2027-01-31", "expires: soon", ":26: ", "'expires' must be a date"),
    "yaml syntax": ("  status: status\n", "  status: [status\n", ":7: ", "YAML syntax"),
    "unquoted [*] in a flow list": ("ignore: [updatedAt]", "ignore: [offers[*].updatedAt]", ":23: ", "quote paths with [*]"),
    "duplicate key": ("  status: status\n", "  status: status\n  status: other\n", ":7: ", "duplicate key 'status'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_rule_files_fail_with_file_and_line(tmp_path: Path, case: str) -> None:
    old, new, where, message = BAD[case]
    assert old in GOOD
    path = write(tmp_path, "payments.yaml", GOOD.replace(old, new, 1))
    with pytest.raises(RulesError) as caught:
        load_rules(tmp_path)
    text = str(caught.value)
    assert f"{path}{where}" in text, text
    assert message in text, text
    assert all(issue.file == str(path) and issue.line > 0 for issue in caught.value.issues)


def test_duplicate_route_across_files_names_both_places(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    other = GOOD.replace("entity: payment", "entity: payment_copy").replace("GET /api/payments/{id}", "GET /api/payments/{paymentId}")
    path = write(tmp_path, "b.yaml", other)
    with pytest.raises(RulesError) as caught:
        load_rules(tmp_path)
    duplicates = [issue for issue in caught.value.issues if "duplicate route" in issue.message]
    assert [(issue.file, issue.line) for issue in duplicates] == [(str(path), 14), (str(path), 15)]
    assert "'GET /api/payments/{id}'" in duplicates[0].message and "a.yaml:14" in duplicates[0].message


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    write(tmp_path, "payments.yaml", GOOD.replace("as: decimal}", "as: nope}").replace("sample: 0.25", "sample: 2"))
    with pytest.raises(RulesError) as caught:
        load_rules(tmp_path)
    assert [issue.line for issue in caught.value.issues] == [9, 20]


def test_empty_or_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="no rule files"):
        load_rules(tmp_path)
    with pytest.raises(RulesError, match="not found"):
        load_rules(tmp_path / "nope")


def test_configmap_dot_folders_are_not_read_twice(tmp_path: Path) -> None:
    write(tmp_path, "..2026_11_22/payments.yaml", GOOD)  # how a mounted ConfigMap looks
    write(tmp_path, "payments.yaml", GOOD)
    assert list(load_rules(tmp_path).entities) == ["payment"]
