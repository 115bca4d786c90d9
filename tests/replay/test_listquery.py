"""Page and sort values are outside input (a client's query string): every hostile
spelling either maps to what the API would do under the route's declared
`out_of_range`, or makes the read unmodeled — never an exception, a huge LIMIT or a
column outside the allow-list. The query a finding carries is redacted and capped."""
from __future__ import annotations

from types import MappingProxyType

import pytest

from shadow.model import ListContext
from shadow.publish.listreason import render
from shadow.publish.redaction import DEFAULT as REDACTION
from shadow.replay.listquery import MAX_LIMIT, PagePlan, Unmodeled, plan_page
from shadow.rules.spec import Bound, Page, SortParam

ORDER = (("slug", False),)
SORT = SortParam("sortBy", MappingProxyType({"name": "name", "createdAt": "created_at"}))
CLAMP = Page(ORDER, "limit", 10, None, (), Bound(1, 100, "clamp"), "page", 1, Bound(1, None, "clamp"), (), SORT)
DEFAULT = Page(ORDER, "limit", 10, "offset", (), Bound(1, 100, "default"))
STRICT = Page(ORDER, "limit", 10, None, (), Bound(1, 100, "error"), "page", 1, Bound(1, 1000, "error"))
UNBOUNDED = Page(ORDER, "limit", None, "offset")

CASES: list[tuple[str, Page, dict[str, list[str]], PagePlan | None]] = [
    ("nothing asked", CLAMP, {}, PagePlan(ORDER, 10, 0)),
    ("page 3", CLAMP, {"page": ["3"], "limit": ["5"]}, PagePlan(ORDER, 5, 10)),
    ("limit 0 clamped up", CLAMP, {"limit": ["0"]}, PagePlan(ORDER, 1, 0)),
    ("limit huge clamped", CLAMP, {"limit": ["9" * 400]}, PagePlan(ORDER, 100, 0)),
    ("limit negative clamped", CLAMP, {"limit": ["-5"]}, PagePlan(ORDER, 1, 0)),
    ("limit not a number", CLAMP, {"limit": ["ten"]}, PagePlan(ORDER, 10, 0)),
    ("limit with spaces", CLAMP, {"limit": [" 7 "]}, PagePlan(ORDER, 7, 0)),
    ("limit 1e3", CLAMP, {"limit": ["1e3"]}, PagePlan(ORDER, 10, 0)),
    ("limit NUL", CLAMP, {"limit": ["5\x00"]}, PagePlan(ORDER, 10, 0)),
    ("page 0 clamped to the first", CLAMP, {"page": ["0"]}, PagePlan(ORDER, 10, 0)),
    ("limit repeated: the first counts", CLAMP, {"limit": ["3", "50"]}, PagePlan(ORDER, 3, 0)),
    ("limit 0 -> default", DEFAULT, {"limit": ["0"]}, PagePlan(ORDER, 10, 0)),
    ("limit 101 -> default", DEFAULT, {"limit": ["101"]}, PagePlan(ORDER, 10, 0)),
    ("negative offset", DEFAULT, {"offset": ["-4"]}, PagePlan(ORDER, 10, 0)),
    ("limit 0 -> error", STRICT, {"limit": ["0"]}, None),
    ("page beyond max -> error", STRICT, {"page": ["1001"]}, None),
    ("page not a number -> error", STRICT, {"page": ["two"]}, None),
    ("no limit, no default", UNBOUNDED, {}, PagePlan(ORDER, None, 0)),
    ("no bound: capped", UNBOUNDED, {"limit": [str(10**12)]}, PagePlan(ORDER, MAX_LIMIT, 0)),
    ("sort two fields", CLAMP, {"sortBy": ["name:desc,createdAt"]},
     PagePlan((("name", True), ("created_at", False), ("slug", False)), 10, 0)),
    ("sort by the tiebreaker itself", CLAMP, {"sortBy": ["name"]}, PagePlan((("name", False), ("slug", False)), 10, 0)),
    ("sort empty items", CLAMP, {"sortBy": [",,"]}, PagePlan(ORDER, 10, 0)),
    ("sort outside the allow-list", CLAMP, {"sortBy": ["password:asc"]}, None),
    ("sort SQL", CLAMP, {"sortBy": ["name; DROP TABLE users"]}, None),
    ("sort bad direction", CLAMP, {"sortBy": ["name:up"]}, None),
    ("sort case matters", CLAMP, {"sortBy": ["Name"]}, None),
]


@pytest.mark.parametrize(("page", "query", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_page_values_from_the_query_string(page: Page, query: dict[str, list[str]], expected: PagePlan | None) -> None:
    if expected is None:
        with pytest.raises(Unmodeled):
            plan_page(page, query)
    else:
        plan = plan_page(page, query)
        assert (plan.order_by, plan.limit, plan.offset) == (expected.order_by, expected.limit, expected.offset)


def test_the_page_number_and_size_applied_are_what_the_body_must_echo() -> None:
    echoed = Page(ORDER, "limit", 10, None, (), Bound(1, 100, "clamp"), "page", 1, Bound(1, None, "clamp"),
                  limit_at=("meta", "limit"), page_at=("page",))
    assert plan_page(echoed, {"page": ["0"], "limit": ["500"]}).echoes(echoed) == {"meta.limit": 100, "page": 1}
    assert plan_page(echoed, {"page": ["3"]}).echoes(echoed) == {"meta.limit": 10, "page": 3}
    assert plan_page(CLAMP, {"page": ["3"]}).echoes(CLAMP) == {}


def test_the_query_a_finding_carries_is_redacted_and_capped() -> None:
    def shown(*query: tuple[str, str], selected: tuple[tuple[str, str, str], ...] = ()) -> str:
        return render(ListContext(query, selected), REDACTION)

    assert shown(("a", "1"), ("a", "x y"), ("b", "2")) == "list read ?a=1&a=x+y&b=2"
    hidden = shown(("access_token", "s3cret"), ("password", "p"))
    assert "s3cret" not in hidden and "password=p" not in hidden and hidden.count("%5Bsecret") == 2
    assert shown(("q", "x" * 1000)).endswith("...") and len(shown(("q", "x" * 1000))) == len("list read ?") + 300
    keyed = shown(("apiKey", "kkk"), selected=(("api_key", "eq", "kkk"), ("status", "in", "['open']")))
    assert "kkk" not in keyed and keyed.endswith(", status in ['open']") and "api_key eq [secret len=3" in keyed
