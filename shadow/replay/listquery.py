"""Which list reads can be checked, and what page and order PostgreSQL must select for
them: pure, from the route's rules and the read's query parameters (issue 20).

    a parameter the route does not model (`?tag=` on a route filtering by author)  -> unmodeled
    a sort value outside the route's allow-list                                    -> unmodeled
    a limit / page outside its range, with `out_of_range: error`                   -> unmodeled
    otherwise                                                      -> PagePlan(order, limit, offset)

An unmodeled read is not list-checked (the API answered a question the rules cannot
ask PostgreSQL); its members are still compared by key.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shadow.rules.spec import Bound, ListFilter, Page, Route, SortParam

MAX_LIMIT = 10_000  # a larger page size is never asked of PostgreSQL


@dataclass(frozen=True, slots=True)
class PagePlan:
    """The order and window PostgreSQL selects for one list read (None = no LIMIT)."""

    order_by: tuple[tuple[str, bool], ...] = ()
    limit: int | None = None
    offset: int = 0
    page: int | None = None  # the page number applied (routes with `page:`)

    def echoes(self, page: Page | None) -> dict[str, int | None]:
        """body path -> the value the API must echo (`limit: {at: limit}`, `page: {at: page}`)."""
        if page is None:
            return {}
        found: dict[str, int | None] = {}
        if page.limit_at:
            found[".".join(page.limit_at)] = self.limit
        if page.page_at:
            found[".".join(page.page_at)] = self.page
        return found


class Unmodeled(ValueError):
    """The read asks something the route's rules do not model: `parameter` names the
    query parameter, the message says what about its value."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


def query_values(query: Mapping[str, Any], name: str) -> list[str]:
    values = query.get(name)
    if values is None:
        return []
    return [str(value) for value in (values if isinstance(values, list | tuple) else [values])]


def filter_values(condition: ListFilter, params: Mapping[str, str], query: Mapping[str, Any]) -> list[Any] | None:
    """The value(s) a list condition compares with, as the API rewrote them (its
    normalizers), before any `to:` lookup; None = no condition (an absent query parameter),
    [] = nothing can match (an absent route parameter). Shared by PostgreSQL's selection
    and `rules test`'s in-memory one, so both read a read's filters alike."""
    if condition.param is not None:
        raw: list[Any] = [params[condition.param]] if condition.param in params else []
    elif condition.query is not None:
        raw = query_values(query, condition.query)
        if condition.op == "in":
            raw = [part for value in raw for part in value.split(",") if part]
        if not raw:
            return None
    else:
        value = condition.value
        raw = list(value) if isinstance(value, list | tuple) else [value]
    for transform in condition.normalize:  # the API's own rewriting of the value (lower, trim, ...)
        raw = [transform.apply(value) for value in raw]
    return raw


def unmodeled(route: Route, query: Mapping[str, Any]) -> tuple[str, ...]:
    """The query parameters of a read the route does not model, sorted."""
    return tuple(sorted(name for name in query if name not in route.query))


def _bounded(values: list[str], default: int | None, bound: Bound, name: str) -> int | None:
    """A limit / page number as the API applies it (its `out_of_range` rule)."""
    if not values:
        return default
    try:
        number = int(values[0].strip())
    except ValueError:
        number = None
    if number is not None and number >= bound.low and (bound.high is None or number <= bound.high):
        return number
    if bound.out_of_range == "error":
        raise Unmodeled(name, f"{name}={values[0][:20]!r} is out of range (the API answers an error)")
    if bound.out_of_range == "default" or number is None:
        return default
    high = bound.high if bound.high is not None else number
    return max(bound.low, min(high, number))


def _sorted_by(sort: SortParam, values: list[str]) -> tuple[tuple[str, bool], ...]:
    order = []
    for item in (part.strip() for value in values for part in value.split(",")):
        if not item:
            continue
        if sort.style == "-field":
            field, descending = item.removeprefix("-"), item.startswith("-")
        else:
            field, _, direction = item.partition(":")
            if direction.lower() not in ("", "asc", "desc"):
                raise Unmodeled(sort.query, f"sort direction {direction[:20]!r} is not asc or desc")
            descending = direction.lower() == "desc"
        column = sort.allow.get(field)
        if column is None:
            raise Unmodeled(sort.query, f"sort field {field[:40]!r} is not in the route's sort allow-list")
        order.append((column, descending))
    return tuple(order)


def plan_page(page: Page | None, query: Mapping[str, Any]) -> PagePlan:
    """The PagePlan of a read; raises Unmodeled when the route cannot say it."""
    if page is None:
        return PagePlan()
    order = page.order_by
    if page.sort is not None:
        chosen = _sorted_by(page.sort, query_values(query, page.sort.query))
        if chosen:  # the route's order breaks ties (and is the API's default)
            columns = {column for column, _ in chosen}
            order = chosen + tuple(item for item in page.order_by if item[0] not in columns)
    limit = None
    if page.limit:
        limit = _bounded(query_values(query, page.limit), page.limit_default, page.limit_bound, page.limit)
        limit = None if limit is None else max(0, min(MAX_LIMIT, limit))
    offset = 0
    number = None
    if page.offset:
        offset = max(0, _bounded(query_values(query, page.offset), 0, Bound(0), page.offset) or 0)
    elif page.page:
        number = _bounded(query_values(query, page.page), page.first_page, page.page_bound, page.page)
        number = number if number is not None else page.first_page
        offset = max(0, number - page.first_page) * (limit or 0)
    return PagePlan(order, limit, offset, number)


def page_count(total: int | None, plan: PagePlan) -> int | None:
    """ceil(total / page size): the `pages` a paginated answer claims."""
    if total is None or not plan.limit:
        return None
    return -(-total // plan.limit)
