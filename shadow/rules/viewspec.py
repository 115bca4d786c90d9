"""Parsing the view-model parts of the rule format (issue 12), kept apart from the
document-shaped core (fieldspec.py, load.py):

    offersCount: {count: purchase_request_offers, fk: pr_id, where: {status: active}}
    paid:        {sum: payments, fk: pr_id, of: amount}
    isMine:      {exists: purchase_requests, where: {id: key, buyer_id: reader}}
    verified:    {column: is_verified, absent: false}        # old documents omit it
    chain:       {json: blockchain, paths: {confirmedAt: timestamp}}

and on routes: `reader:`, `where:` bound to query parameters (`op:` eq/in/ranges),
`order_by:` / `limit:` / `offset:` / `total:`, `key: {path: id, normalize: lower}`,
`key: {const: all}` (scalar lists).
"""
from __future__ import annotations

from typing import Any

from shadow.rules.reader import DOC_PATH, IDENTIFIER, TABLE, Reader, kind_of, show
from shadow.rules.spec import (
    NO_ABSENT,
    Condition,
    Field,
    KeySource,
    ListFilter,
    Lookup,
    Page,
    ReaderSpec,
    Transform,
)
from shadow.rules.yamltree import YList, YMap

AGGREGATE_OPTIONS = ("fk", "parent", "where", "of", "as", "absent")
KEY_NORMALIZERS = ("lower", "trim")
LIST_OPS = ("eq", "in", "gt", "gte", "lt", "lte")
ROUTE_VIEW_KEYS = ("reader", "order_by", "limit", "offset", "total")


def parse_aggregate(reader: Reader, name: str, kind: str, spec: YMap, line: int, where: str,
                    common: dict[str, Any]) -> Field | None:
    """count / sum / exists over child or junction rows: `fk` (or a `where` column bound
    to `key`) ties the rows to the parent row; other `where` columns are constants
    (`{in: [..]}` for a set) or `reader`."""
    table = spec[kind]
    if not isinstance(table, str) or not TABLE.match(table):
        reader.error(spec.line_of(kind), f"{where}: {kind!r} must be a table name, got {kind_of(table)}")
        return None
    conditions: list[Condition] = []
    fk = reader.string(spec, "fk", where, pattern=IDENTIFIER)
    if fk is not None:
        conditions.append(Condition(fk, "key"))
    filters = spec.get("where", YMap())
    if not isinstance(filters, YMap):
        reader.error(spec.line_of("where"), f"{where}: 'where' must map column -> key | reader | value")
        return None
    for column, value in filters.items():
        at = filters.line_of(column)
        if not isinstance(column, str) or not IDENTIFIER.match(column):
            reader.error(at, f"{where}: 'where' key must be a column name, got {show(column)}")
            continue
        if value in ("key", "reader"):
            conditions.append(Condition(column, value))
        elif isinstance(value, YMap) and set(value) == {"in"} and isinstance(value["in"], YList):
            conditions.append(Condition(column, "value", tuple(value["in"]), "in"))
        elif isinstance(value, YMap) and set(value) == {"value"}:
            conditions.append(Condition(column, "value", value["value"]))
        elif isinstance(value, str | int | float | bool):
            conditions.append(Condition(column, "value", value))
        else:
            reader.error(at, f"{where}: where {column!r} must be key, reader, a constant, {{in: [..]}} or {{value: v}}")
    keys = [condition for condition in conditions if condition.bind == "key"]
    if len(keys) != 1:
        reader.error(spec.line, f"{where}: {kind} needs exactly one column tied to the parent row: "
                                f"'fk: <column>' or 'where: {{<column>: key}}' (got {len(keys)})")
        return None
    of = reader.string(spec, "of", where, pattern=IDENTIFIER)
    if (kind == "sum") != (of is not None):
        reader.error(spec.line, f"{where}: 'of: <column>' is {'required' if kind == 'sum' else 'only allowed'} for sum")
        return None
    parent = reader.string(spec, "parent", where, default="id", pattern=IDENTIFIER) or "id"
    ordered = (keys[0], *[condition for condition in conditions if condition.bind != "key"])
    return Field(name, kind, line, table=table, fk=keys[0].column, parent=parent, where=ordered, of=of, **common)


def parse_absent(spec: YMap) -> Any:
    """`absent: v` — the value an absent field stands for (NO_ABSENT when not given)."""
    return spec.get("absent", NO_ABSENT)


def parse_json_paths(reader: Reader, spec: YMap, where: str,
                     transforms: Any) -> tuple[tuple[str, tuple[Transform, ...]], ...]:
    """`paths: {a.b: timestamp, 'c[*].d': decimal}` inside a json column."""
    value = spec.get("paths")
    if value is None:
        return ()
    if not isinstance(value, YMap):
        reader.error(spec.line_of("paths"), f"{where}: 'paths' must map a path inside the json -> normalizers")
        return ()
    found = []
    for path, normalizers in value.items():
        if not isinstance(path, str) or not DOC_PATH.match(path):
            reader.error(value.line_of(path), f"{where}: bad path inside json: {show(path)}")
            continue
        found.append((path, transforms(reader, normalizers, value.line_of(path), f"{where} path {path!r}")))
    return tuple(found)


def parse_lookup(reader: Reader, spec: YMap, where: str) -> Lookup | None:
    to = reader.string(spec, "to", where, pattern=TABLE)
    by = reader.string(spec, "by", where, pattern=IDENTIFIER)
    if to is None:
        if by is not None:
            reader.error(spec.line, f"{where}: 'by' needs 'to: <table>'")
        return None
    return Lookup(to, by)


def parse_reader(reader: Reader, options: YMap, where: str) -> ReaderSpec | None:
    """`reader: {header: Authorization, jwt_claim: id, to: users}`."""
    value = options.get("reader")
    if value is None:
        return None
    if not isinstance(value, YMap) or not reader.keys(value, ("header", "jwt_claim", "to", "by"), f"{where} reader",
                                                       ("header", "jwt_claim", "to")):
        if not isinstance(value, YMap):
            reader.error(options.line_of("reader"),
                         f"{where}: 'reader' is {{header, jwt_claim, to}}, got {kind_of(value)}")
        return None
    header = reader.string(value, "header", f"{where} reader")
    claim = reader.string(value, "jwt_claim", f"{where} reader")
    lookup = parse_lookup(reader, value, f"{where} reader")
    if not header or not claim or lookup is None:
        return None
    return ReaderSpec(header, claim, lookup)


def parse_page(reader: Reader, options: YMap, where: str, is_list: bool) -> Page | None:
    """`order_by: [created_at desc, id]`, `limit: {query: limit, default: 20}`,
    `offset: {query: offset}`, `total: count` on a list route."""
    if not any(key in options for key in ("order_by", "limit", "offset", "total")):
        return None
    if not is_list:
        reader.error(options.line, f"{where}: order_by / limit / offset / total are for list routes")
        return None
    order = []
    for item in reader.strings(options, "order_by", where):
        column, _, direction = item.strip().partition(" ")
        if not IDENTIFIER.match(column) or direction.strip().lower() not in ("", "asc", "desc"):
            reader.error(options.line_of("order_by"),
                         f"{where}: order_by entries are 'column [asc|desc]', got {show(item)}")
            continue
        order.append((column, direction.strip().lower() == "desc"))
    limit, limit_default = _query_param(reader, options, "limit", where)
    offset, _ = _query_param(reader, options, "offset", where)
    if (limit or offset) and not order:
        reader.error(options.line, f"{where}: a page (limit/offset) needs 'order_by' (which rows are on it)")
    total = reader.string(options, "total", where, pattern=DOC_PATH) or ""
    return Page(tuple(order), limit, limit_default, offset, tuple(step for step in total.split(".") if step))


def _query_param(reader: Reader, options: YMap, name: str, where: str) -> tuple[str | None, int | None]:
    value = options.get(name)
    if value is None:
        return None, None
    if isinstance(value, str):
        return value, None
    if isinstance(value, YMap) and reader.keys(value, ("query", "default"), f"{where} {name}", ("query",)):
        default = value.get("default")
        if default is not None and (isinstance(default, bool) or not isinstance(default, int) or default < 0):
            reader.error(value.line_of("default"), f"{where}: {name} default must be a whole number >= 0")
            default = None
        return str(value["query"]), default
    reader.error(options.line_of(name), f"{where}: {name!r} is a query parameter name or {{query, default}}")
    return None, None


def parse_view_key(reader: Reader, value: YMap, line: int, where: str, params: tuple[str, ...],
                   is_list: bool) -> tuple[KeySource, tuple[str, ...], str | None] | None:
    """`key: {path: slug, normalize: lower}` and `key: {const: all}`; None when `value`
    is not one of these forms (the core parser reports it)."""
    if "const" in value and len(value) == 1:
        const = value["const"]
        if not isinstance(const, str) or not const:
            reader.error(line, f"{where}: key const must be a non-empty string")
            return None
        return KeySource("const", const), (), const
    if "normalize" not in value or len(value) != 2:
        return None
    normalize = value["normalize"]
    steps = (normalize,) if isinstance(normalize, str) else tuple(normalize) if isinstance(normalize, YList) else ()
    bad = [step for step in steps if step not in KEY_NORMALIZERS]
    if not steps or bad:
        reader.error(line, f"{where}: key normalize takes {', '.join(KEY_NORMALIZERS)}, got {show(normalize)}")
        return None
    kind = next(k for k in value if k != "normalize")
    name = value[kind]
    if kind not in ("path", "query", "header") or not isinstance(name, str) or not name:
        reader.error(line, f"{where}: key must be {{path|query|header: NAME, normalize: ...}}")
        return None
    if kind == "path" and name not in params:
        reader.error(line, f"{where}: key path parameter {{{name}}} is not in the template")
    if is_list:
        reader.error(line, f"{where}: a list route takes its keys from the body (each item's _id)")
    return KeySource(kind, name), steps, None


def parse_list_filter(reader: Reader, column: str, spec: YMap, line: int, where: str,
                      params: tuple[str, ...]) -> ListFilter | None:
    """One `where:` entry of a list route: `{param|query|value, op, to, by}`."""
    if not reader.keys(spec, ("param", "query", "value", "op", "to", "by"), f"{where} where {column!r}"):
        return None
    sources = [key for key in ("param", "query", "value") if key in spec]
    if len(sources) != 1:
        reader.error(line, f"{where}: where {column!r} needs exactly one of 'param', 'query' or 'value'")
        return None
    param = spec.get("param")
    if param is not None and param not in params:
        reader.error(line, f"{where}: where {column!r} uses {{{param}}}, which is not in the template")
        return None
    op = reader.string(spec, "op", where, default="eq", choices=LIST_OPS) or "eq"
    lookup = parse_lookup(reader, spec, f"{where} where {column!r}")
    return ListFilter(column, param, lookup.to if lookup else None, spec.get("value"),
                      query=spec.get("query"), op=op, by=lookup.by if lookup else None)


def reader_fields(fields: Any) -> list[str]:
    """The nodes of fields that depend on who reads (an aggregate bound to `reader`)."""
    found: list[str] = []
    for spec in fields:
        if any(condition.bind == "reader" for condition in spec.where):
            found.append(spec.node)
        found.extend(reader_fields(spec.fields))
    return found


def check_reader_fields(reader: Reader, entity: Any, routes: list[Any]) -> None:
    """A field bound to the reader needs every route of its entity to say who reads."""
    nodes = reader_fields(entity.fields.values())
    if not nodes:
        return
    for route in routes:
        if route.reader is None:
            reader.error(route.line, f"route {route.name!r}: field {nodes[0]!r} depends on the reader: "
                                     "add 'reader: {header: Authorization, jwt_claim: <claim>, to: <collection>}'")
