"""The `recheck:` option of a route: the scalar spelling and the schedule mapping, and
every bad value refused with its file:line."""
from __future__ import annotations

from pathlib import Path

import pytest

from shadow.rules import RulesError, load_rules
from shadow.rules.spec import RecheckPolicy
from tests.widgets import widget_rules

HEAD = widget_rules()


def load_route(tmp_path: Path, route: str) -> RecheckPolicy:
    (tmp_path / "w.yaml").write_text(HEAD + route)
    return load_rules(tmp_path).routes[0].recheck


@pytest.mark.parametrize(("route", "expected"), [
    ("  - GET /w/{id}\n", RecheckPolicy((2.0,), "upstream")),
    ("  - route: GET /w/{id}\n    recheck: 3s\n", RecheckPolicy((3.0,), "upstream")),
    ("  - route: GET /w/{id}\n    recheck: 0\n", RecheckPolicy((), "upstream")),
    ("  - route: GET /w/{id}\n    recheck: 500ms\n", RecheckPolicy((0.5,), "upstream")),
    ("  - route: GET /w/{id}\n    recheck: {after: [1s, 5s, 30s, 2m], control: mongo}\n",
     RecheckPolicy((1.0, 5.0, 30.0, 120.0), "mongo")),
    ("  - route: GET /w/{id}\n    recheck: {after: 2s, control: none}\n", RecheckPolicy((2.0,), "none")),
    ("  - route: GET /w/{id}\n    recheck: {control: upstream, headers: [Authorization, X-Tenant]}\n",
     RecheckPolicy((2.0,), "upstream", ("authorization", "x-tenant"))),
    ("  - route: POST /w/{id}\n    recheck: 1s\n", RecheckPolicy((1.0,), "none")),  # never replay a POST
])
def test_recheck_spellings(tmp_path: Path, route: str, expected: RecheckPolicy) -> None:
    assert load_route(tmp_path, route) == expected


@pytest.mark.parametrize(("recheck", "message"), [
    ("soon", "'recheck' must be a duration like 2s"),
    ("-1", "'recheck' must be a duration like 2s"),
    ("[1s, 2s]", "'recheck' must be a duration like 2s"),
    ("{after: [5s, 1s]}", "strictly ascending"),
    ("{after: [1s, 1s]}", "strictly ascending"),
    ("{after: [0]}", "above 0 and up to 1h"),
    ("{after: [2h]}", "above 0 and up to 1h"),
    ("{after: [1s, {a: 1}]}", "above 0 and up to 1h"),
    ("{after: [1s, 2s, 3s, 4s, 5s, 6s, 7s, 8s, 9s]}", "at most 8"),
    ("{control: mirror}", "'control' must be one of upstream, mongo, none"),
    ("{control: none, headers: [Authorization]}", "only sent with control: upstream"),
    ("{headers: ['bad header']}", "bad 'headers' entry"),
    ("{headers: ['" + "x" * 65 + "']}", "bad 'headers' entry"),
    ("{afterr: [1s]}", "unknown key 'afterr'"),
])
def test_bad_recheck_values_are_refused_with_file_and_line(tmp_path: Path, recheck: str, message: str) -> None:
    (tmp_path / "w.yaml").write_text(HEAD + f"  - route: GET /w/{{id}}\n    recheck: {recheck}\n")
    with pytest.raises(RulesError) as caught:
        load_rules(tmp_path)
    assert message in str(caught.value), str(caught.value)
    assert all(issue.line == 9 for issue in caught.value.issues), caught.value.issues


@pytest.mark.parametrize(("route", "message"), [
    ("  - route: POST /w/{id}\n    recheck: {control: upstream}\n", "only GET and HEAD may be replayed"),
    ("  - route: GET /w/{id}\n    source: mongo\n    recheck: {control: mongo}\n", "needs a postgres source"),
])
def test_controls_that_cannot_work_are_refused(tmp_path: Path, route: str, message: str) -> None:
    (tmp_path / "w.yaml").write_text(HEAD + route)
    with pytest.raises(RulesError) as caught:
        load_rules(tmp_path)
    assert message in str(caught.value)
