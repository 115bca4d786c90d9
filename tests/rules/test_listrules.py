"""The list-route keys of issue 20 in the rule format: the sample of
tests/replay/sources/test_listfilters.py loads as meant and validates against the JSON Schema;
every bad spelling is refused with file:line and what is wrong."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from shadow.rules import RulesError, load_rules
from shadow.rules.schema import rule_schema
from shadow.rules.spec import Bound, ReaderSet, SortParam, Through
from tests.replay.sources.test_listfilters import RULES


def test_the_list_keys_load_as_meant_and_agree_with_the_schema(tmp_path: Path) -> None:
    (tmp_path / "articles.yaml").write_text(RULES)
    rules = load_rules(tmp_path)
    articles = rules.route_named("GET /api/articles")
    assert articles is not None and articles.page is not None
    author, tag, favorited = articles.where
    assert (author.on_miss, [step.name for step in author.normalize]) == ("drop", ["trim", "lower"])
    assert tag.through == Through("article_tags", "article_id") and tag.on_miss == "empty"
    assert (favorited.through, favorited.to, favorited.by) == (Through("favorites", "article_id"), "users", "username")
    assert articles.page.limit_bound == Bound(1, 50, "default") and not articles.strict_query
    feed = rules.route_named("GET /api/articles/feed")
    assert feed is not None and feed.where[0].reader_set == ReaderSet("follows", "followee_id", "follower_id")
    mine = rules.route_named("GET /api/my/articles")
    assert mine is not None and mine.where[0].reader and mine.reader is not None and mine.reader.schemes == ("token",)
    pages = rules.route_named("GET /api/pages/articles")
    assert pages is not None and pages.page is not None
    assert (pages.page.page, pages.page.first_page, pages.page.page_bound) == ("page", 1, Bound(1, None, "error"))
    assert pages.page.pages == ("totalPages",) and pages.page.sort == SortParam("sortBy", {"score": "score", "slug": "slug"})
    user = rules.route_named("GET /api/user")
    assert user is not None and (user.key.kind, user.key.name) == ("claim", "id")
    validator = jsonschema.Draft202012Validator(rule_schema())
    for document in yaml.safe_load_all(RULES):
        assert not list(validator.iter_errors(json.loads(json.dumps(document)))), document["entity"]


def test_the_shipped_example_loads_and_agrees_with_the_schema() -> None:
    folder = Path(__file__).resolve().parents[2] / "rules" / "examples" / "articles"
    rules = load_rules(folder)
    assert set(rules.entities) == {"article", "current_user", "profile"}
    validator = jsonschema.Draft202012Validator(rule_schema())
    for document in yaml.safe_load_all((folder / "articles.yaml").read_text()):
        assert not list(validator.iter_errors(json.loads(json.dumps(document)))), document["entity"]


GONE = "    recheck: {after: [1s], gone: [401, 404, 410]}\n"
BAD = {
    "on_miss without a lookup": ("{query: tag, through", "{query: tag, on_miss: drop, through", "'on_miss' is for lookups"),
    "unknown on_miss": ("on_miss: drop,", "on_miss: ignore,", "'on_miss' must be one of empty, drop"),
    "through without fk": ("through: article_tags, fk: article_id}", "through: article_tags}", "needs 'fk: <column"),
    "fk without through": ("{query: tag, through: article_tags, fk: article_id}", "{query: tag, fk: article_id}",
                           "'fk' / 'parent' go with 'through"),
    "reader set without by": ("select: followee_id, by: follower_id}", "select: followee_id}", "missing required key 'by'"),
    "reader not true": ("{reader: true}", "{reader: yes please}", "'reader' is true or {in"),
    "reader with a lookup": ("{reader: true}", "{reader: true, to: users}", "a reader value is already an id"),
    "unknown normalizer": ("normalize: [trim, lower]", "normalize: [trim, upper]", "unknown normalizer"),
    "unknown sort style": ("allow: {score: score, slug: slug}}", "allow: {score: score, slug: slug}, style: asc}",
                           "'style' must be one of field:dir, -field"),
    "sort allow not a mapping": ("allow: {score: score, slug: slug}}", "allow: [score]}", "sort 'allow' maps"),
    "sort allow to a bad column": ("allow: {score: score, slug: slug}}", "allow: {score: 'sco re'}}", "must name a column"),
    "page and offset": ("    page: {query: page, out_of_range: error}\n",
                        "    page: {query: page, out_of_range: error}\n    offset: offset\n", "'page' and 'offset' both"),
    "page without limit": ("    limit: {query: limit, default: 2, min: 1, max: 4, out_of_range: clamp}\n", "",
                           "'page' needs 'limit'"),
    "max below min": ("default: 20, min: 1, max: 50,", "default: 20, min: 10, max: 5,", "limit max is below its min"),
    "unknown out_of_range": ("out_of_range: clamp}", "out_of_range: wrap}", "'out_of_range' must be one of default, clamp, error"),
    "negative min": ("min: 1, max: 4", "min: -1, max: 4", "limit min must be a whole number"),
    "query on a single route": ("    at: user\n", "    at: user\n    query: [x]\n", "'query' (the modeled parameters) is for list"),
    "claim key without a reader": ("    key: {jwt_claim: id}\n    reader: {header: Authorization, jwt_claim: id, to: users}\n",
                                   "    key: {jwt_claim: id}\n",
                                   "key {jwt_claim} reads the token"),
    "reader where without a reader": ("    reader: {header: Authorization, jwt_claim: id, to: users, scheme: [Token]}\n", "",
                                      "a where bound to the reader needs 'reader:'"),
    "bad scheme": ("scheme: [Token]", "scheme: ['To ken']", "reader scheme is a word"),
    "bad gone status": ("    order_by: [slug]\n", "    order_by: [slug]\n" + GONE.replace("401", "200"), "'gone' lists HTTP statuses"),
    "gone without an upstream control": ("    order_by: [slug]\n",
                                         "    order_by: [slug]\n" + GONE.replace("gone", "control: none, gone"),
                                         "'gone' statuses are for control: upstream"),
    "strict_query not a boolean": ("    query: [fields]\n", "    query: [fields]\n    strict_query: sure\n",
                                   "'strict_query' must be true or false"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_list_rules_fail_with_file_and_line(tmp_path: Path, case: str) -> None:
    old, new, message = BAD[case]
    assert old in RULES, case
    path = tmp_path / "articles.yaml"
    path.write_text(RULES.replace(old, new, 1))
    with pytest.raises(RulesError) as caught:
        load_rules(tmp_path)
    assert message in str(caught.value), str(caught.value)
    assert all(issue.file == str(path) and issue.line > 0 for issue in caught.value.issues)
