"""Route matching and key extraction: what the proxy calls on every request."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shadow.rules import InvalidKey, RuleSet, load_rules

RULES = """\
entity: user
collection: users
table: users
fields: {_id: legacy_object_id, name: name}
routes:
  - GET /api/users/{id}
  - GET /api/users/me                       # a literal beats a parameter
  - route: GET /api/users
    list: true
    at: data
  - route: GET /api/lookup
    key: {query: id}
  - route: GET /api/whoami
    key: {header: X-User-Id}
  - route: GET /api/profile
    key: body
---
entity: tag
collection: tags
table: tags
key_type: string
fields: {_id: legacy_object_id}
routes:
  - GET /api/users/{userId}/tags/{id}
"""
OID = "65a1b2c3d4e5f60718293a4b"


@pytest.fixture
def rules(tmp_path: Path) -> RuleSet:
    (tmp_path / "users.yaml").write_text(textwrap.dedent(RULES))
    return load_rules(tmp_path)


def test_match_picks_the_route_and_its_parameters(rules: RuleSet) -> None:
    match = rules.match("GET", f"/api/users/{OID}")
    assert match is not None and match.route.name == "GET /api/users/{id}" and match.params == {"id": OID}
    assert rules.match("GET", "/api/users/me").route.name == "GET /api/users/me"  # type: ignore[union-attr]
    assert rules.match("GET", f"/api/users/{OID}/?verbose=1").params == {"id": OID}  # type: ignore[union-attr]
    assert rules.match("GET", "/api/users/u1/tags/a%20b").params == {"userId": "u1", "id": "a b"}  # type: ignore[union-attr]
    assert rules.match("POST", f"/api/users/{OID}") is None
    assert rules.match("GET", f"/api/users/{OID}/orders") is None
    assert rules.match("GET", "/") is None


def test_controls_from_path_query_header_and_body(rules: RuleSet) -> None:
    document = {"_id": OID, "name": "Ann"}
    match = rules.match("GET", f"/api/users/{OID.upper()}")
    assert match.route.controls(match, {}, {}, document) == {OID: document}  # type: ignore[union-attr]
    match = rules.match("GET", "/api/lookup")
    assert match.route.controls(match, {"id": OID}, {}, document) == {OID: document}  # type: ignore[union-attr]
    match = rules.match("GET", "/api/whoami")
    assert match.route.controls(match, {}, {"x-user-id": OID}, document) == {OID: document}  # type: ignore[union-attr]
    match = rules.match("GET", "/api/profile")
    assert match.route.controls(match, {}, {}, document) == {OID: document}  # type: ignore[union-attr]


def test_list_controls_are_keyed_by_each_items_id(rules: RuleSet) -> None:
    other = "65a1b2c3d4e5f60718293a4c"
    match = rules.match("GET", "/api/users")
    body = {"data": [{"_id": OID, "name": "a"}, {"_id": other, "name": "b"}], "page": 1}
    assert list(match.route.controls(match, {}, {}, body)) == [OID, other]  # type: ignore[union-attr]
    assert match.route.controls(match, {}, {}, {"error": "x"}) == {}  # nothing where the list should be  # type: ignore[union-attr]


@pytest.mark.parametrize("path,query,body", [
    ("/api/users/not-an-object-id", {}, {"_id": OID}),
    ("/api/users/" + "a" * 300, {}, {"_id": OID}),
    ("/api/users/%ff%fe" + "0" * 22, {}, {"_id": OID}),  # not UTF-8
    ("/api/lookup", {}, {"_id": OID}),  # the query parameter is absent
    ("/api/users", {}, {"data": [{"_id": OID}, {"_id": 42}]}),
    ("/api/users", {}, {"data": [{"_id": OID}, "junk"]}),
])
def test_untrusted_keys_are_refused(rules: RuleSet, path: str, query: dict[str, str], body: object) -> None:
    match = rules.match("GET", path)
    assert match is not None
    with pytest.raises(InvalidKey):
        match.route.controls(match, query, {}, body)


def test_string_keys_are_checked_too(rules: RuleSet) -> None:
    match = rules.match("GET", "/api/users/u1/tags/%00x")
    with pytest.raises(InvalidKey, match="NUL"):
        match.route.controls(match, {}, {}, {"_id": "x"})  # type: ignore[union-attr]
    match = rules.match("GET", "/api/users/u1/tags/blue")
    assert match.route.controls(match, {}, {}, {"_id": "blue"}) == {"blue": {"_id": "blue"}}  # type: ignore[union-attr]
