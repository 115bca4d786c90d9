"""PostgreSQL queries for view models (issue 12), beside the document fetch of
postgres.py: aggregates over child rows, the reader's id, list selections under query
parameters (filters, order, page, total) and scalar lists. Always bound parameters;
names come from validated rules and are quoted; query-parameter strings are converted
to the column's type (as PostgreSQL reports it) before they are sent.

The queries run through `Queries` (what they need of PostgresSource: its counted,
bounded query and its cached id_map lookup), so that postgres.py imports this module
and not the other way round."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import asyncpg

from shadow.replay.listquery import page_count, plan_page, query_values
from shadow.replay.viewread import BoundReader
from shadow.rules.spec import Entity, Field, ListFilter, Lookup, Route

__all__ = ["Queries", "Selection", "aggregate_sql", "distinct_fetch", "resolve", "select_keys"]

_OPS = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


class Queries(Protocol):
    """What these queries need of their source (postgres.py's PostgresSource)."""

    round_trips: int  # queries sent; a statement prepared here counts as one

    async def query(self, connection: asyncpg.Connection, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Run one SELECT with bound arguments, within the source's statement timeout."""
        ...

    async def new_id(self, connection: asyncpg.Connection, collection: str, legacy: str) -> Any:
        """The PostgreSQL uuid of a legacy Mongo id (id_map, cached); None when unknown."""
        ...


def _quote(name: str) -> str:
    return ".".join(f'"{part}"' for part in name.split("."))


@dataclass(frozen=True, slots=True)
class Selection:
    """What PostgreSQL shows for one list read: keys in the route's order (its page),
    and the count of every row of the filter (None when the route has no `total:`)."""

    keys: tuple[str, ...]
    total: int | None = None
    selected_by: tuple[tuple[str, str, str], ...] = ()  # (column, op, value) that selected them, for findings
    pages: int | None = None  # ceil(total / page size) when the route checks a page count
    echo: Mapping[str, int | None] = field(default_factory=dict)  # body path -> the page / limit applied


def aggregate_sql(spec: Field) -> tuple[str, tuple[Any, ...], bool]:
    """(SQL, constant arguments from $2, bound to the reader) of a count/sum/exists field:
    one grouped query for all parents of a batch."""
    fk = _quote(spec.fk or "")
    conditions, args = [f"{fk} = ANY($1)"], []
    readers = []
    for condition in spec.where[1:]:
        if condition.bind == "reader":
            readers.append(condition.column)
            continue
        args.append(list(condition.value) if condition.op == "in" else condition.value)
        operator = "= ANY" if condition.op == "in" else "="
        conditions.append(f"{_quote(condition.column)} {operator}(${len(args) + 1})")
    for column in readers:
        conditions.append(f"{_quote(column)} = ${len(args) + 2}")
    value = f"sum({_quote(spec.of)})" if spec.kind == "sum" and spec.of else "count(*)"
    sql = (f"SELECT {fk}, {value} AS n FROM {_quote(spec.table or '')} "
           f"WHERE {' AND '.join(conditions)} GROUP BY {fk}")
    return sql, tuple(args), bool(readers)


async def resolve(source: Queries, connection: asyncpg.Connection, lookup: Lookup, value: Any) -> Any:
    """An API value -> a PostgreSQL id: through id_map, or by a unique column of a table
    (its `id`). None when there is no such row."""
    if value is None:
        return None
    if lookup.by is None:
        return await source.new_id(connection, lookup.to, str(value))
    sql = f"SELECT id FROM {_quote(lookup.to)} WHERE {_quote(lookup.by)}::text = $1 LIMIT 2"
    rows = await source.query(connection, sql, str(value))
    return rows[0]["id"] if len(rows) == 1 else None


async def distinct_fetch(source: Queries, connection: asyncpg.Connection, entity: Entity,
                         keys: list[str]) -> dict[str, Any]:
    """A scalar-list entity: every (constant) key shows the distinct values of a column."""
    column = _quote(entity.distinct or "")
    rows = await source.query(connection, f"SELECT DISTINCT {column} FROM {_quote(entity.table)} "
                                           f"WHERE {column} IS NOT NULL ORDER BY 1")
    values = [row[0] for row in rows]
    return {key: list(values) for key in keys}


async def select_keys(source: Queries, connection: asyncpg.Connection, entity: Entity, route: Route,
                      params: Mapping[str, str], query: Mapping[str, Any],
                      reader: BoundReader | None = None) -> Selection:
    """The keys a list read shows: the route's `where` (path / query parameters /
    constants / the reader, through child and junction tables), the order (`order_by`,
    a `sort` parameter), the page (`limit` with `offset` or `page`); and the filter's
    count when the body claims a total or a page count. Raises listquery.Unmodeled when
    the read's page or sort cannot be said in the rules' terms."""
    plan = plan_page(route.page, query)
    counted = route.page is not None and bool(route.page.total or route.page.pages)
    conditions: list[str] = []
    args: list[Any] = []
    selected_by: list[tuple[str, str, str]] = []
    reader_id: Any = _UNRESOLVED
    for condition in route.where:
        if condition.reader or condition.reader_set:
            if reader_id is _UNRESOLVED:
                reader_id = None if reader is None else await resolve(source, connection, reader.lookup, reader.value)
            if reader_id is None:
                return Selection((), 0 if counted else None, (*selected_by, (condition.column, "", "no reader")))
            args.append(reader_id)
            value_sql = f"${len(args)}"
            if condition.reader_set is not None:
                found = condition.reader_set
                value_sql = f"ANY(SELECT {_quote(found.select)} FROM {_quote(found.table)} " \
                            f"WHERE {_quote(found.by)} = ${len(args)})"
                selected_by.append((condition.column, "in", f"the reader's {found.table}"))
            else:
                selected_by.append((condition.column, "eq", "the reader"))
            conditions.append(_through(condition, f"{_column(condition)} = {value_sql}"))
            continue
        values = await _filter_values(source, connection, condition, params, query)
        if values is None:
            continue  # a query parameter the read did not use, or a lookup miss with on_miss: drop
        if not values:
            return Selection((), 0 if counted else None,  # no row can match
                             (*selected_by, (condition.column, "", "no row found for the value")))
        args.append(values if condition.op == "in" else values[0])
        column = _column(condition)
        conditions.append(_through(condition, f"{column} = ANY(${len(args)})" if condition.op == "in"
                                   else f"{column} {_OPS[condition.op]} ${len(args)}"))
        selected_by.append((condition.column, condition.op, _shown(args[-1])))
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    table, key = _quote(entity.table), f"t.{_quote(entity.key)}"
    order = limit = offset = ""
    if plan.order_by:
        order = " ORDER BY " + ", ".join(f"t.{_quote(column)}{' DESC' if desc else ''}"
                                         for column, desc in plan.order_by)
    page_args: list[int] = []
    if plan.limit is not None:
        page_args.append(plan.limit)
        limit = f" LIMIT ${len(args) + len(page_args)}::bigint"
    if plan.offset:
        page_args.append(plan.offset)
        offset = f" OFFSET ${len(args) + len(page_args)}::bigint"
    rows = await _typed_fetch(source, connection, f"SELECT {key} FROM {table} t{where}{order}{limit}{offset}",
                              [*args, *page_args])
    total = None
    if counted:
        found_count = await _typed_fetch(source, connection, f"SELECT count(*) FROM {table} t{where}", args)
        total = found_count[0][0]
    return Selection(tuple(row[0] for row in rows), total, tuple(selected_by), page_count(total, plan),
                     plan.echoes(route.page))


_UNRESOLVED: Any = object()


def _column(condition: ListFilter) -> str:
    """The filtered column: of the main row (`t`), or of the child/junction row (`j`)."""
    return f"{'j' if condition.through else 't'}.{_quote(condition.column)}"


def _through(condition: ListFilter, test: str) -> str:
    """A condition on a child / junction table holds when some row of it matches (EXISTS):
    a row is selected once, however many of its children match."""
    through = condition.through
    if through is None:
        return test
    return (f"EXISTS (SELECT 1 FROM {_quote(through.table)} j "
            f"WHERE j.{_quote(through.fk)} = t.{_quote(through.parent)} AND {test})")


def _shown(value: Any) -> str:
    text = str(value if not isinstance(value, list) else [str(item) for item in value])
    return text if len(text) <= 80 else text[:77] + "..."


async def _filter_values(source: Queries, connection: asyncpg.Connection, condition: ListFilter,
                         params: Mapping[str, str], query: Mapping[str, Any]) -> list[Any] | None:
    """The value(s) of one condition; None = no condition; [] = nothing can match."""
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
    if condition.to is None:
        return raw
    lookup = Lookup(condition.to, condition.by)
    resolved = [await resolve(source, connection, lookup, value) for value in raw]
    found = [value for value in resolved if value is not None]
    if not found and condition.on_miss == "drop":
        return None  # the API drops a condition whose value names nothing (`?author=nobody`: every row)
    return found


_PARAMETER_TYPES: dict[str, tuple[str, ...]] = {}  # SQL text -> its parameters' type names
MAX_PARAMETER_TYPES = 512  # one per route and set of conditions used; bounded all the same


async def _typed_fetch(source: Queries, connection: asyncpg.Connection, sql: str, args: list[Any]) -> Any:
    """Run `sql` with query-parameter strings converted to the parameters' types (as
    PostgreSQL reports them when the statement is first prepared; the SQL text has
    only bound parameters, so it is one per route and set of conditions)."""
    types = _PARAMETER_TYPES.get(sql)
    if types is None:
        source.round_trips += 1
        statement = await connection.prepare(sql)
        types = tuple(kind.name for kind in statement.get_parameters())
        if len(_PARAMETER_TYPES) >= MAX_PARAMETER_TYPES:
            _PARAMETER_TYPES.clear()
        _PARAMETER_TYPES[sql] = types
    converted = [_convert(value, kind) for value, kind in zip(args, types, strict=False)]
    return await source.query(connection, sql, *converted)


def _convert(value: Any, type_name: str) -> Any:
    if isinstance(value, list):
        return [_convert(item, type_name.lstrip("_")) for item in value]
    if not isinstance(value, str):
        return value
    try:
        if type_name in ("int2", "int4", "int8"):
            return int(value)
        if type_name in ("numeric", "float4", "float8"):
            return Decimal(value) if type_name == "numeric" else float(value)
        if type_name == "bool":
            return value.lower() in ("true", "1", "yes")
        if type_name in ("timestamptz", "timestamp"):
            return datetime.fromisoformat(value)
    except (ValueError, InvalidOperation):
        return value  # PostgreSQL reports it; the read is then an error, never a guess
    return value
