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

from types import MappingProxyType
from typing import Any, cast

from shadow.rules.reader import DOC_PATH, IDENTIFIER, TABLE, Reader, kind_of, show
from shadow.rules.spec import (
    NO_ABSENT,
    Bound,
    Condition,
    Entity,
    Field,
    KeySource,
    ListFilter,
    Lookup,
    OnMiss,
    OutOfRange,
    Page,
    ReaderSet,
    ReaderSpec,
    Route,
    SortParam,
    Through,
    Transform,
)
from shadow.rules.yamltree import YList, YMap

AGGREGATE_OPTIONS = ("fk", "parent", "where", "of", "as", "absent")
KEY_NORMALIZERS = ("lower", "trim")
LIST_OPS = ("eq", "in", "gt", "gte", "lt", "lte")
PAGE_KEYS = ("order_by", "limit", "offset", "page", "total", "pages", "sort")
ROUTE_VIEW_KEYS = ("reader", *PAGE_KEYS, "query", "strict_query")
WHERE_KEYS = ("param", "query", "value", "reader", "op", "to", "by", "normalize", "on_miss", "through", "fk", "parent")
OUT_OF_RANGE = ("default", "clamp", "error")
SORT_STYLES = ("field:dir", "-field")
ON_MISS = ("empty", "drop")


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
    """`reader: {header: Authorization, jwt_claim: id, to: users, scheme: [Bearer, Token, bare]}`."""
    value = options.get("reader")
    if value is None:
        return None
    if not isinstance(value, YMap) or not reader.keys(value, ("header", "jwt_claim", "to", "by", "scheme"),
                                                       f"{where} reader", ("header", "jwt_claim", "to")):
        if not isinstance(value, YMap):
            reader.error(options.line_of("reader"),
                         f"{where}: 'reader' is {{header, jwt_claim, to}}, got {kind_of(value)}")
        return None
    header = reader.string(value, "header", f"{where} reader")
    claim = reader.string(value, "jwt_claim", f"{where} reader")
    lookup = parse_lookup(reader, value, f"{where} reader")
    schemes = []
    for scheme in reader.strings(value, "scheme", f"{where} reader"):
        word = scheme.strip().lower()
        if word == "bare":
            schemes.append("")
        elif word and all(char.isalnum() or char in "-._~+/" for char in word):
            schemes.append(word)
        else:
            reader.error(value.line_of("scheme"),
                         f"{where}: reader scheme is a word (Bearer, Token) or bare, got {show(scheme)}")
    if not header or not claim or lookup is None:
        return None
    if "scheme" in value:
        return ReaderSpec(header, claim, lookup, tuple(schemes))
    return ReaderSpec(header, claim, lookup)


def parse_page(reader: Reader, options: YMap, where: str, is_list: bool) -> Page | None:
    """`order_by: [created_at desc, id]`, `limit: {query: limit, default: 20, max: 100,
    out_of_range: clamp}`, `offset: {query: offset}` or `page: {query: page, first: 1}`,
    `total: count`, `pages: totalPages`, `sort: {query, allow, style}` on a list route."""
    if not any(key in options for key in PAGE_KEYS):
        return None
    if not is_list:
        reader.error(options.line, f"{where}: {' / '.join(PAGE_KEYS)} are for list routes")
        return None
    order = []
    for item in reader.strings(options, "order_by", where):
        column, _, direction = item.strip().partition(" ")
        if not IDENTIFIER.match(column) or direction.strip().lower() not in ("", "asc", "desc"):
            reader.error(options.line_of("order_by"),
                         f"{where}: order_by entries are 'column [asc|desc]', got {show(item)}")
            continue
        order.append((column, direction.strip().lower() == "desc"))
    limit, limit_default, limit_bound, _, limit_at = _query_param(reader, options, "limit", where, 0)
    offset, _, _, _, _ = _query_param(reader, options, "offset", where, 0)
    page, _, page_bound, first, page_at = _query_param(reader, options, "page", where, 1)
    sort = _sort(reader, options, where)
    if (limit or offset or page) and not order and sort is None:
        reader.error(options.line, f"{where}: a page (limit/offset/page) needs 'order_by' (which rows are on it)")
    if page and offset:
        reader.error(options.line_of("page"), f"{where}: 'page' and 'offset' both place the page: use one")
    if page and not limit:
        reader.error(options.line_of("page"), f"{where}: 'page' needs 'limit' (the page size)")
    total = reader.string(options, "total", where, pattern=DOC_PATH) or ""
    pages = reader.string(options, "pages", where, pattern=DOC_PATH) or ""
    if pages and not limit:
        reader.error(options.line_of("pages"), f"{where}: 'pages' (the page count) needs 'limit'")
    return Page(tuple(order), limit, limit_default, offset, _steps(total), limit_bound, page, first, page_bound,
                _steps(pages), sort, limit_at, page_at)


def _steps(path: str) -> tuple[str, ...]:
    return tuple(step for step in path.split(".") if step)


def _query_param(reader: Reader, options: YMap, name: str, where: str,
                 low: int) -> tuple[str | None, int | None, Bound, int, tuple[str, ...]]:
    """(parameter, default, bound, first page, body path echoing the value applied) of
    `limit` / `offset` / `page`."""
    value = options.get(name)
    bound = Bound(low)
    if value is None:
        return None, None, bound, 1, ()
    if isinstance(value, str):
        return value, None, bound, 1, ()
    allowed = ("query", "default", "min", "max", "out_of_range") + (("first", "at") if name == "page" else ()) \
        + (("at",) if name == "limit" else ())
    if isinstance(value, YMap) and reader.keys(value, allowed, f"{where} {name}", ("query",)):
        numbers = {}
        for option in ("default", "min", "max", "first"):
            number = value.get(option)
            if number is not None and (isinstance(number, bool) or not isinstance(number, int) or number < 0):
                reader.error(value.line_of(option), f"{where}: {name} {option} must be a whole number >= 0")
                number = None
            numbers[option] = number
        first = numbers["first"] if numbers["first"] is not None else 1
        low = numbers["min"] if numbers["min"] is not None else (first if name == "page" else low)
        high = numbers["max"]
        if high is not None and high < low:
            reader.error(value.line_of("max"), f"{where}: {name} max is below its min ({low})")
            high = None
        out = reader.string(value, "out_of_range", f"{where} {name}", default="clamp", choices=OUT_OF_RANGE) or "clamp"
        at = reader.string(value, "at", f"{where} {name}", pattern=DOC_PATH) or ""
        return str(value["query"]), numbers["default"], Bound(low, high, cast(OutOfRange, out)), first, _steps(at)
    reader.error(options.line_of(name),
                 f"{where}: {name!r} is a query parameter name or {{query, default, min, max, out_of_range}}")
    return None, None, bound, 1, ()


def _sort(reader: Reader, options: YMap, where: str) -> SortParam | None:
    """`sort: {query: sortBy, allow: {name: name, createdAt: created_at}, style: field:dir}`."""
    value = options.get("sort")
    if value is None:
        return None
    if not isinstance(value, YMap) or not reader.keys(value, ("query", "allow", "style"), f"{where} sort",
                                                       ("query", "allow")):
        if not isinstance(value, YMap):
            reader.error(options.line_of("sort"), f"{where}: 'sort' is {{query, allow, style}}, got {kind_of(value)}")
        return None
    allow = value["allow"]
    if not isinstance(allow, YMap) or not allow:
        reader.error(value.line_of("allow"), f"{where}: sort 'allow' maps the API's sort fields to columns")
        return None
    columns = {}
    for name, column in allow.items():
        if not isinstance(name, str) or not isinstance(column, str) or not IDENTIFIER.match(column):
            reader.error(allow.line_of(name),
                         f"{where}: sort allow {show(name)} must name a column, got {show(column)}")
            continue
        columns[name] = column
    style = reader.string(value, "style", f"{where} sort", default="field:dir", choices=SORT_STYLES) or "field:dir"
    return SortParam(str(value["query"]), MappingProxyType(columns), style)


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
    if "jwt_claim" in value and set(value) <= {"jwt_claim", "normalize"}:
        claim = value["jwt_claim"]
        if not isinstance(claim, str) or not claim:
            reader.error(line, f"{where}: key jwt_claim must name a claim")
            return None
        if is_list:
            reader.error(line, f"{where}: a list route takes its keys from the body (each item's _id)")
        steps = _key_steps(reader, value, line, where) if "normalize" in value else ()
        return KeySource("claim", claim), steps or (), None
    if "normalize" not in value or len(value) != 2:
        return None
    steps = _key_steps(reader, value, line, where)
    if steps is None:
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


def _key_steps(reader: Reader, value: YMap, line: int, where: str) -> tuple[str, ...] | None:
    normalize = value["normalize"]
    steps = (normalize,) if isinstance(normalize, str) else tuple(normalize) if isinstance(normalize, YList) else ()
    bad = [step for step in steps if step not in KEY_NORMALIZERS]
    if not steps or bad:
        reader.error(line, f"{where}: key normalize takes {', '.join(KEY_NORMALIZERS)}, got {show(normalize)}")
        return None
    return steps


def parse_list_filter(reader: Reader, column: str, spec: YMap, line: int, where: str,
                      params: tuple[str, ...], transforms: Any) -> ListFilter | None:
    """One `where:` entry of a list route: `{param|query|value|reader, op, to, by,
    normalize, on_miss, through, fk, parent}`."""
    if not reader.keys(spec, WHERE_KEYS, f"{where} where {column!r}"):
        return None
    sources = [key for key in ("param", "query", "value", "reader") if key in spec]
    if len(sources) != 1:
        reader.error(line, f"{where}: where {column!r} needs exactly one of 'param', 'query', 'value' or 'reader'")
        return None
    param = spec.get("param")
    if param is not None and param not in params:
        reader.error(line, f"{where}: where {column!r} uses {{{param}}}, which is not in the template")
        return None
    op = reader.string(spec, "op", where, default="eq", choices=LIST_OPS) or "eq"
    lookup = parse_lookup(reader, spec, f"{where} where {column!r}")
    on_miss = reader.string(spec, "on_miss", f"{where} where {column!r}", default="empty", choices=ON_MISS) or "empty"
    if "on_miss" in spec and lookup is None:
        reader.error(spec.line_of("on_miss"), f"{where}: where {column!r}: 'on_miss' is for lookups ('to:')")
    normalize = _normalizers(reader, spec, f"{where} where {column!r}", transforms)
    through = _through(reader, spec, f"{where} where {column!r}")
    bound_reader, reader_set = _reader_source(reader, spec, f"{where} where {column!r}")
    if (bound_reader or reader_set) and (lookup is not None or normalize):
        reader.error(line, f"{where}: where {column!r}: a reader value is already an id (no to/by/normalize)")
    return ListFilter(column, param, lookup.to if lookup else None, spec.get("value"),
                      query=spec.get("query"), op=op, by=lookup.by if lookup else None, normalize=normalize,
                      on_miss=cast(OnMiss, on_miss), reader=bound_reader, reader_set=reader_set,
                      through=through)


def _normalizers(reader: Reader, spec: YMap, where: str, transforms: Any) -> tuple[Transform, ...]:
    """`normalize: lower`, `[trim, lower]` or any field normalizer (`lower_trim`, `{enum: ..}`)."""
    value = spec.get("normalize")
    if value is None:
        return ()
    items = value if isinstance(value, YList) else [value]
    found: list[Transform] = []
    for item in items:
        if item in KEY_NORMALIZERS:
            found.append(Transform(item, _lower if item == "lower" else _trim))
        else:
            found.extend(transforms(reader, item, spec.line_of("normalize"), where))
    return tuple(found)


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _trim(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _through(reader: Reader, spec: YMap, where: str) -> Through | None:
    table = reader.string(spec, "through", where, pattern=TABLE)
    fk = reader.string(spec, "fk", where, pattern=IDENTIFIER)
    parent = reader.string(spec, "parent", where, pattern=IDENTIFIER)
    if table is None:
        if fk is not None or parent is not None:
            reader.error(spec.line, f"{where}: 'fk' / 'parent' go with 'through: <table>'")
        return None
    if fk is None:
        reader.error(spec.line, f"{where}: 'through: {table}' needs 'fk: <column of {table} pointing at the row>'")
        return None
    return Through(table, fk, parent or "id")


def _reader_source(reader: Reader, spec: YMap, where: str) -> tuple[bool, ReaderSet | None]:
    """`reader: true` (the reader's id) or `reader: {in: follows, select: followee_id,
    by: follower_id}` (a set derived from the reader)."""
    if "reader" not in spec:
        return False, None
    value = spec["reader"]
    if value is True:
        return True, None
    parts = ("in", "select", "by")
    if isinstance(value, YMap) and reader.keys(value, parts, f"{where} reader", parts):
        table = reader.string(value, "in", f"{where} reader", pattern=TABLE)
        select = reader.string(value, "select", f"{where} reader", pattern=IDENTIFIER)
        by = reader.string(value, "by", f"{where} reader", pattern=IDENTIFIER)
        if table and select and by:
            return False, ReaderSet(table, select, by)
        return False, None
    if not isinstance(value, YMap):
        reader.error(spec.line_of("reader"), f"{where}: 'reader' is true or {{in: <table>, select: <column>, "
                                             f"by: <column>}}, got {kind_of(value)}")
    return False, None


def modeled_query(reader: Reader, options: YMap, where: str, filters: tuple[ListFilter, ...],
                  page: Page | None, is_list: bool) -> frozenset[str]:
    """The query parameters a list route models: those of `where` and the page, plus
    `query: [..]` (parameters that do not change which rows are shown, e.g. `fields`)."""
    named = reader.strings(options, "query", where)
    if named and not is_list:
        reader.error(options.line_of("query"), f"{where}: 'query' (the modeled parameters) is for list routes")
    derived = {spec.query for spec in filters if spec.query}
    return frozenset({*named, *derived, *(page.parameters() if page else ())})


def reader_fields(fields: Any) -> list[str]:
    """The nodes of fields that depend on who reads (an aggregate bound to `reader`)."""
    found: list[str] = []
    for spec in fields:
        if any(condition.bind == "reader" for condition in spec.where):
            found.append(spec.node)
        found.extend(reader_fields(spec.fields))
    return found


def check_reader_fields(reader: Reader, entity: Entity, routes: list[Route]) -> None:
    """A field bound to the reader needs every route of its entity to say who reads."""
    nodes = reader_fields(entity.fields.values())
    if not nodes:
        return
    for route in routes:
        if route.reader is None:
            reader.error(route.line, f"route {route.name!r}: field {nodes[0]!r} depends on the reader: "
                                     "add 'reader: {header: Authorization, jwt_claim: <claim>, to: <collection>}'")
