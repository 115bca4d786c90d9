"""`shadow rules test` with view models (issue 20): count / sum / exists fields rebuilt
from `rows:` (it crashed with KeyError 'n'), a `reader:` for fields bound to the reader,
and list cases — a route, a query and a reader — checked for members, order, total and
page count against the rows, or reported as not list-checked (an unmodeled parameter)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shadow.cli import main
from tests.replay.sources.test_listfilters import RULES

VIEW = """\
---
entity: article_view
collection: articles
table: articles
fields:
  _id: legacy_object_id
  slug: slug
  favoritesCount: {count: favorites, fk: article_id}
  likes: {count: favorites, fk: article_id, where: {kind: like}}
  votes: {sum: comments, fk: article_id, of: votes}
  favorited: {exists: favorites, where: {article_id: key, user_id: reader}}
routes:
  - route: GET /api/articles/{id}
    reader: {header: Authorization, jwt_claim: id, to: users}
"""
ROWS = """\
      articles:
        - {id: a1, legacy_object_id: "000000000000000000000001", slug: one, author_id: u1, status: open, score: 5, created_at: 2026-01-02}
        - {id: a2, legacy_object_id: "000000000000000000000002", slug: two, author_id: u2, status: open, score: 7, created_at: 2026-01-03}
        - {id: a3, legacy_object_id: "000000000000000000000003", slug: three, author_id: u1, status: open, score: 1, created_at: 2026-01-04}
      users: [{id: u1, username: alice}, {id: u2, username: bob}]
      article_tags: [{article_id: a1, tag: dragons}, {article_id: a1, tag: all}, {article_id: a3, tag: dragons}]
      favorites: [{article_id: a1, user_id: u1, kind: like}, {article_id: a1, user_id: u2, kind: star}]
      comments: [{article_id: a1, votes: 3}, {article_id: a1, votes: 4}]
"""
CASES = f"""\
rules: rules
tests:
  - name: aggregates and a reader's flag from rows
    entity: article_view
    reader: u1
    control: {{_id: "000000000000000000000001", slug: one, favoritesCount: 2, likes: 1, votes: 7, favorited: true}}
    rows: &rows
{ROWS}
    expect: {{outcome: match}}
  - name: another reader does not favor it
    entity: article_view
    reader: u9
    control: {{_id: "000000000000000000000001", slug: one, favoritesCount: 2, likes: 1, votes: 7, favorited: true}}
    rows: *rows
    expect: {{outcome: mismatch, paths: [favorited]}}
  - name: no child rows count as zero
    entity: article_view
    control: {{_id: "000000000000000000000002", slug: two, favoritesCount: 0, likes: 0, votes: 0, favorited: false}}
    rows: *rows
    expect: {{outcome: match}}
  - name: a tag through the junction table, newest first
    entity: article
    route: GET /api/articles
    query: {{tag: dragons}}
    control: {{articles: [{{_id: "000000000000000000000003"}}, {{_id: "000000000000000000000001"}}], articlesCount: 2}}
    rows: *rows
    expect: {{outcome: match}}
  - name: an author the API does not know drops the filter; a row only PostgreSQL has is extra
    entity: article
    route: GET /api/articles
    query: {{author: nobody, limit: 2}}
    control: {{articles: [{{_id: "000000000000000000000003"}}], articlesCount: 2}}
    rows: *rows
    expect: {{outcome: mismatch, paths: ["articles[*]", articlesCount]}}
  - name: the reader's follows
    entity: article
    route: GET /api/articles/feed
    reader: u1
    control: {{articles: [{{_id: "000000000000000000000002"}}], articlesCount: 1}}
    rows:
      <<: *rows
      follows: [{{follower_id: u1, followee_id: u2}}]
    expect: {{outcome: match}}
  - name: page two, sorted by score
    entity: article
    route: GET /api/pages/articles
    query: {{page: 2, sortBy: "score:desc"}}
    control: {{results: [{{_id: "000000000000000000000003"}}], totalResults: 3, totalPages: 2}}
    rows: *rows
    expect: {{outcome: match}}
  - name: an unmodeled parameter is not list-checked
    entity: article
    route: GET /api/articles
    query: {{search: dragons}}
    control: {{articles: [], articlesCount: 0}}
    rows: *rows
    expect: {{outcome: skipped}}
"""


def write(tmp_path: Path, cases: str) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "articles.yaml").write_text(RULES + VIEW)
    path = tmp_path / "cases.yaml"
    path.write_text(textwrap.dedent(cases))
    return path


def test_view_models_and_list_reads_in_rules_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, CASES)
    code = main(["rules", "test", str(path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("  ok  ") == 8 and "SUCCESS: 8 passed, 0 failed" in out


def test_a_wrong_expectation_fails_with_the_reason_not_a_traceback(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    cases = CASES.replace("expect: {outcome: skipped}", "expect: {outcome: match}").replace(
        "query: {page: 2, sortBy: \"score:desc\"}", "query: {page: 2, sortBy: \"secret:desc\"}")
    path = write(tmp_path, cases)
    assert main(["rules", "test", str(path)]) == 1
    out = capsys.readouterr().out
    assert "FAILED: 6 passed, 2 failed" in out and "Traceback" not in out
    assert "expected match, got skipped (not list-checked: search)" in out
    assert "sort field 'secret' is not in the route's sort allow-list" in out
