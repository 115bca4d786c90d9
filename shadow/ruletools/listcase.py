"""List reads in `shadow rules test` cases: what PostgreSQL would select for a list
route under a read's query parameters and reader, from in-memory rows (no database),
with the same page and sort rules as the sidecar (replay/listquery.py). Comparison of
a row value with a query-parameter string follows the row value's type, as PostgreSQL
converts a parameter to its column's type."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from shadow.replay.listquery import filter_values, page_count, plan_page
from shadow.rules.spec import Entity, ListFilter, Lookup, Route

Rows = Mapping[str, list[Mapping[str, Any]]]
_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b, "gt": lambda a, b: a > b, "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b,
}


def resolve_in_rows(tables: Rows, lookup: Lookup, value: Any) -> Any:
    """An API value -> an id, through the id_map rows or a unique column of a table."""
    if lookup.by is None:
        found = [row["new_id"] for row in tables.get("id_map", [])
                 if row.get("collection") == lookup.to and str(row.get("legacy_object_id")) == str(value)]
    else:
        found = [row.get("id") for row in tables.get(lookup.to, []) if str(row.get(lookup.by)) == str(value)]
    return found[0] if len(found) == 1 else None


def select_rows(entity: Entity, route: Route, tables: Rows, params: Mapping[str, str], query: Mapping[str, Any],
                reader: Any) -> tuple[tuple[str, ...], int | None, int | None, dict[str, int | None]]:
    """(keys in the route's order and page, count of the filter, page count, echoed
    page / limit by body path) of one list read. Raises listquery.Unmodeled like the sidecar."""
    plan = plan_page(route.page, query)
    counted = route.page is not None and bool(route.page.total or route.page.pages)
    rows = list(tables.get(entity.table, []))
    for condition in route.where:
        test = _condition(condition, tables, params, query, reader)
        if test is None:
            continue
        rows = [row for row in rows if _holds(condition, tables, row, test)]
    for column, descending in reversed(plan.order_by):  # stable sorts, last key first; NULLs as PostgreSQL
        rows.sort(key=_sort_key(column), reverse=descending)
    shown = rows[plan.offset:] if plan.limit is None else rows[plan.offset:plan.offset + plan.limit]
    total = len(rows) if counted else None
    return tuple(str(row.get(entity.key)) for row in shown), total, page_count(total, plan), plan.echoes(route.page)


def _sort_key(column: str) -> Callable[[Mapping[str, Any]], tuple[bool, Any]]:
    """NULLs last ascending, first descending (PostgreSQL's default)."""
    def key(row: Mapping[str, Any]) -> tuple[bool, Any]:
        value = row.get(column)
        return value is None, value if value is not None else 0
    return key


def _condition(condition: ListFilter, tables: Rows, params: Mapping[str, str], query: Mapping[str, Any],
               reader: Any) -> Callable[[Any], bool] | None:
    """A test of one column value; None = no condition."""
    if condition.reader_set is not None:
        found = condition.reader_set
        allowed = {row.get(found.select) for row in tables.get(found.table, []) if reader is not None
                   and str(row.get(found.by)) == str(reader)}
        return lambda value: value in allowed
    if condition.reader:
        return lambda value: reader is not None and str(value) == str(reader)
    raw = filter_values(condition, params, query)
    if raw is None:
        return None
    if condition.to is not None:
        resolved = [resolve_in_rows(tables, Lookup(condition.to, condition.by), value) for value in raw]
        raw = [value for value in resolved if value is not None]
        if not raw and condition.on_miss == "drop":
            return None
    if condition.op == "in":
        return lambda value: any(_same_type(value, wanted) == value for wanted in raw)
    compare = _TESTS[condition.op]
    return lambda value: bool(raw) and value is not None and _ordered(compare, value, _same_type(value, raw[0]))


def _holds(condition: ListFilter, tables: Rows, row: Mapping[str, Any], test: Callable[[Any], bool]) -> bool:
    through = condition.through
    if through is None:
        return test(row.get(condition.column))
    return any(test(child.get(condition.column)) for child in tables.get(through.table, [])
               if child.get(through.fk) == row.get(through.parent))


def _ordered(compare: Callable[[Any, Any], bool], value: Any, wanted: Any) -> bool:
    try:
        return compare(value, wanted)
    except TypeError:
        return compare(str(value), str(wanted))


def _same_type(sample: Any, value: Any) -> Any:
    """`value` (a query string, mostly) as the type of the row value `sample`."""
    if not isinstance(value, str) or isinstance(sample, str) or sample is None:
        return value if not isinstance(sample, str) else str(value)
    try:
        if isinstance(sample, bool):
            return value.lower() in ("true", "1", "yes")
        if isinstance(sample, int):
            return int(value)
        if isinstance(sample, float):
            return float(value)
        if isinstance(sample, Decimal):
            return Decimal(value)
        if isinstance(sample, datetime):
            return datetime.fromisoformat(value)
    except (ValueError, InvalidOperation):
        return value
    return value
