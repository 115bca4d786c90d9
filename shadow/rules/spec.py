"""The frozen, typed form of the rule files: what `load_rules` returns.

Parsed once at load (or reload); nothing here does I/O. An `Entity` says how the API
document of one Mongo collection is rebuilt from PostgreSQL; a `Route` says which reads
of the API show that entity and where the key and the document are.

Over 350 lines on purpose: every frozen rule type in one place, so the rule format reads
as one file (view-model types are in viewspec.py; the types of the `stored:`, `verify:`
and `redaction:` sections in sections.py, below their parsers).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, NamedTuple

from shadow.model import SourceKind
from shadow.rules.claims import header_value, jwt_claim
from shadow.rules.sections import DEFAULT_VIEW, NO_REDACTION_RULES, Checks, RedactionRules, StoredView

#: a route's sampling: random reads, or the same keys always (followable over time)
SampleBy = Literal["random", "key"]

#: the kinds of field a rule can describe (the one "source" key of a field spec)
FIELD_KINDS = ("column", "ref", "mixed", "object", "json", "rows", "child", "const", "count", "sum", "exists")
#: the aggregate kinds (one grouped query over child/junction rows per batch; viewspec.py)
AGGREGATES = ("count", "sum", "exists")
#: a field without `absent:` (None is a legitimate "absent means null")
NO_ABSENT: Any = type("NoAbsent", (), {"__repr__": lambda self: "NO_ABSENT"})()

_OBJECT_ID = re.compile(r"^[0-9a-fA-F]{24}$")
MAX_KEY_CHARS = 200


class InvalidKey(ValueError):
    """A key taken from a request or response is not what the entity expects (keys are
    untrusted input: never sent to a database unchecked)."""


@dataclass(frozen=True, slots=True)
class Transform:
    """One normalizer from a field's `as:` list, bound to its argument."""

    name: str
    apply: Callable[[Any], Any] = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True, eq=False)
class Field:
    """How one API field is produced from PostgreSQL, and canonicalized for comparing.

    kind        column | ref | mixed | object | json | rows | child | const
    column      the column (column, ref, json) or the column prefix (mixed)
    to          the Mongo collection a ref/mixed points at (id_map's `collection`)
    table, fk   the child table and its column pointing at the parent (rows, child)
    parent      the parent row's column the fk refers to (default: id)
    fields      sub-fields (object, child, rows of objects)
    value       the item spec of rows of scalars (`value: {ref: offer_id, to: users}`)
    order_by    SQL order of rows (the API shows them in that order)
    unordered   rows compared as a multiset, sorted by `natural_key` then the whole item
    transforms  `as:` normalizers, applied to both sides before comparing
    node        the field's dotted path in the entity (names the fetch of a child table)
    """

    name: str
    kind: str
    line: int = 0
    column: str | None = None
    to: str | None = None
    table: str | None = None
    fk: str | None = None
    parent: str = "id"
    fields: tuple[Field, ...] = ()
    value: Field | None = None
    order_by: tuple[str, ...] = ()
    unordered: bool = False
    natural_key: str | None = None
    const: Any = None
    default: Any = None
    transforms: tuple[Transform, ...] = ()
    node: str = ""
    children: Mapping[str, Field] = field(default_factory=dict, repr=False)
    # --- view models (viewspec.py): aggregates, absent values, paths inside json
    where: tuple[Condition, ...] = ()  # count/sum/exists: extra conditions on the rows
    of: str | None = None  # sum: the summed column
    absent: Any = NO_ABSENT  # the value an absent (or null) field stands for, on both sides
    json_paths: tuple[tuple[str, tuple[Transform, ...]], ...] = ()  # json: per-path `as`

    def columns(self) -> list[str]:
        """The columns of the *current* row this field reads."""
        if self.kind in ("column", "ref", "json"):
            return [self.column] if self.column else []
        if self.kind == "mixed":
            return [f"{self.column}_ref_kind", f"{self.column}_id", f"{self.column}_external_ref"]
        if self.kind == "object":
            return [column for sub in self.fields for column in sub.columns()]
        if self.kind in ("rows", "child", *AGGREGATES):
            return [self.parent]
        return []


@dataclass(frozen=True, slots=True)
class KnownDivergence:
    """An accepted difference: counted as suppressed until it expires, then as a diff."""

    path: str
    reason: str
    expires: date
    file: str = ""
    line: int = 0

    def covers(self, path: str) -> bool:
        return path == self.path or path.startswith(self.path + ".") or path.startswith(self.path + "[")


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class Entity:
    """One Mongo collection and its remodeled PostgreSQL home."""

    name: str
    collection: str
    table: str
    fields: Mapping[str, Field]
    key: str = "legacy_object_id"  # the PG column holding the API's key
    id: str = "id"  # the PG primary key child tables refer to
    key_type: str = "objectid"  # objectid | string
    id_field: str = "_id"  # where a document carries its key
    ignore: tuple[str, ...] = ()
    redact: tuple[str, ...] = ()
    redact_names: tuple[str, ...] = ()  # secret field names, beyond the defaults (publish/redaction.py)
    redaction: RedactionRules = NO_REDACTION_RULES  # the `redaction:` section (rules/sections.py)
    hidden: tuple[str, ...] = ()  # fields the API never shows (the mongo source drops them)
    known: tuple[KnownDivergence, ...] = ()
    unverifiable: tuple[str, ...] = ()  # not compared (like ignore) but counted per path
    distinct: str | None = None  # a scalar list: the distinct values of this column
    view: bool = False  # computed per read by the API: no store holds it (the mongo source refuses it)
    null_is_missing: bool = True  # `"x": null` and no "x" are the same
    stored: StoredView = DEFAULT_VIEW  # stored Mongo document -> API document (rules/sections.py)
    checks: Checks | None = None  # what `shadow verify` checks beyond documents (rules/sections.py)
    file: str = ""
    line: int = 0

    def validate_key(self, raw: Any) -> str:
        """The key as stored in the key column; raises InvalidKey for anything else."""
        if not isinstance(raw, str):
            raise InvalidKey(f"{self.name}: key must be a string, got {type(raw).__name__}")
        if len(raw) > MAX_KEY_CHARS:
            raise InvalidKey(f"{self.name}: key longer than {MAX_KEY_CHARS} characters")
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidKey(f"{self.name}: key is not valid UTF-8: {raw!r:.60}") from None
        if self.key_type == "objectid":
            if not _OBJECT_ID.match(raw):
                raise InvalidKey(f"{self.name}: key is not a 24-hex ObjectId: {raw!r:.60}")
            return raw.lower()
        if not raw or "\x00" in raw:
            raise InvalidKey(f"{self.name}: key is empty or contains NUL: {raw!r:.60}")
        return raw


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where a route's key comes from: path / query / header parameter, or `body`
    (the `_id` of the document, or of every item of a list)."""

    kind: str  # path | query | header | body | claim (a JWT claim of the route's reader header)
    name: str = ""


@dataclass(frozen=True, slots=True)
class Lookup:
    """How an API value (a key, a parameter, a reader's claim) becomes a PostgreSQL id:
    through id_map (`to: collection`) or through a unique column (`to: table, by: column`,
    the table's `id` is returned)."""

    to: str
    by: str | None = None


@dataclass(frozen=True, slots=True)
class Condition:
    """One condition of an aggregate field's rows: `column <op> <bound value>`.
    bind: key (the parent row's id) | reader (the reader's id) | value (a constant)."""

    column: str
    bind: str
    value: Any = None
    op: str = "eq"  # eq | in


#: what a `where` lookup that finds no row does: select nothing, or drop the condition
OnMiss = Literal["empty", "drop"]


@dataclass(frozen=True, slots=True)
class ReaderSet:
    """`{reader: {in: follows, select: followee_id, by: follower_id}}`: the values of
    `select` in the rows of table `in` whose `by` column is the reader's id."""

    table: str
    select: str
    by: str


@dataclass(frozen=True, slots=True)
class Through:
    """`through: article_tags, fk: article_id`: the condition holds for a row when some
    row of the child / junction table (its `fk` = the row's `parent` column) matches
    (SQL EXISTS)."""

    table: str
    fk: str
    parent: str = "id"


@dataclass(frozen=True, slots=True)
class ListFilter:
    """`where:` of a list route: column <op> a path parameter (`param`), a query
    parameter (`query`; no parameter -> no condition), a constant (`value`) or the
    reader (`reader`); a parameter is resolved to a PostgreSQL id when `lookup` says
    how; `through` puts the column on a child / junction table (EXISTS)."""

    column: str
    param: str | None = None
    to: str | None = None
    value: Any = None
    query: str | None = None
    op: str = "eq"  # eq | in | gt | gte | lt | lte
    by: str | None = None  # `to` is a table and `by` its unique column (not id_map)
    normalize: tuple[Transform, ...] = ()  # applied to each raw parameter value first
    on_miss: OnMiss = "empty"  # a lookup that finds no row: select nothing, or no condition
    reader: bool = False  # the value is the reader's id (no reader: nothing can match)
    reader_set: ReaderSet | None = None  # the column is in a set derived from the reader
    through: Through | None = None


@dataclass(frozen=True, slots=True)
class ReaderSpec:
    """Who is reading (per-reader fields): a JWT claim in a header, read, not verified
    (only 2xx answers are shadowed: the upstream accepted the token), resolved to an id."""

    header: str
    claim: str
    lookup: Lookup
    #: accepted scheme words before the token, lower-case; "" = a bare token
    schemes: tuple[str, ...] = ("bearer", "token", "")


#: what the API does with a `limit` / `page` outside [min, max] or not a number:
#: uses its default, clamps it into the range, or answers an error (never shadowed)
OutOfRange = Literal["default", "clamp", "error"]


@dataclass(frozen=True, slots=True)
class Bound:
    """The range of a page parameter and what the API does outside it."""

    low: int = 0
    high: int | None = None
    out_of_range: OutOfRange = "clamp"


@dataclass(frozen=True, slots=True)
class SortParam:
    """`sort: {query: sortBy, allow: {name: name, createdAt: created_at}, style: field:dir}`:
    a query parameter choosing the order, through an allow-list (API field -> column).
    style `field:dir` reads `name:desc,createdAt:asc`; `-field` reads `-name,createdAt`."""

    query: str
    allow: Mapping[str, str]
    style: str = "field:dir"


@dataclass(frozen=True, slots=True)
class Page:
    """A list route's pagination and order: what PostgreSQL must select to show the
    same page. `limit`/`offset`/`page` name query parameters (with defaults)."""

    order_by: tuple[tuple[str, bool], ...] = ()  # (column, descending)
    limit: str | None = None
    limit_default: int | None = None
    offset: str | None = None
    total: tuple[str, ...] = ()  # path of the total count in the body
    limit_bound: Bound = Bound()
    page: str | None = None  # a page number parameter: offset = (page - first_page) * limit
    first_page: int = 1
    page_bound: Bound = Bound(1)
    pages: tuple[str, ...] = ()  # path of the page count in the body: ceil(total / limit)
    sort: SortParam | None = None
    limit_at: tuple[str, ...] = ()  # body path echoing the page size the API applied
    page_at: tuple[str, ...] = ()  # body path echoing the page number the API applied

    def echoes(self) -> tuple[tuple[str, ...], ...]:
        """The body paths of the page's echoed parameters (checked against the plan)."""
        return tuple(path for path in (self.limit_at, self.page_at) if path)

    def parameters(self) -> tuple[str, ...]:
        """The query parameters this page reads."""
        names = (self.limit, self.offset, self.page, self.sort.query if self.sort else None)
        return tuple(name for name in names if name)


#: where a recheck re-reads the control: the same safe read replayed to the upstream,
#: the stored document in MongoDB (through the entity's toJSON rules), or not at all
RecheckControl = Literal["upstream", "mongo", "none"]
RECHECK_CONTROLS: tuple[RecheckControl, ...] = ("upstream", "mongo", "none")
#: the only methods a recheck may replay to the upstream
SAFE_METHODS = ("GET", "HEAD")


@dataclass(frozen=True, slots=True)
class RecheckPolicy:
    """When a key that differed is read again, and where its control comes from.

    after    seconds after the first read, ascending; () = never rechecked
    control  upstream | mongo | none (none: compare with the original answer)
    headers  request headers (lower-case) the upstream replay carries; nothing else is sent
    """

    after: tuple[float, ...] = (2.0,)
    control: RecheckControl = "upstream"
    headers: tuple[str, ...] = ()
    gone: tuple[int, ...] = (404, 410)  # control statuses meaning "not there any more"

    @property
    def enabled(self) -> bool:
        return bool(self.after)


@dataclass(frozen=True, slots=True, eq=False)
class Route:
    """One read of the API whose answer shows `entity` documents."""

    name: str  # "GET /api/payments/{id}"
    method: str
    template: str
    entity: str
    param_names: tuple[str, ...] = ()
    source: SourceKind = "postgres"
    sample: float = 1.0
    sample_by: SampleBy = "random"
    recheck: RecheckPolicy = RecheckPolicy()
    is_list: bool = False
    complete: bool = False  # a list that shows every row of its filter: `extra` is checked
    key: KeySource = KeySource("path", "id")
    at: tuple[str, ...] = ()  # where the document / list sits in the body
    where: tuple[ListFilter, ...] = ()
    # --- view models (viewspec.py)
    reader: ReaderSpec | None = None
    page: Page | None = None
    key_normalize: tuple[str, ...] = ()  # lower | trim, applied to the key before lookups
    const_key: str | None = None  # scalar lists: the one key of the route
    query: frozenset[str] = frozenset()  # query parameters a list check models (where, page, `query:`)
    strict_query: bool = False  # a read with another parameter is a finding, not a skip
    file: str = ""
    line: int = 0
    entity_spec: Entity | None = field(default=None, repr=False)

    def document(self, body: Any) -> Any:
        """The document (or list) at `at` in the response body; None when absent."""
        for step in self.at:
            if not isinstance(body, dict):
                return None
            body = body.get(step)
        return body

    def controls(self, match: RouteMatch, query: Mapping[str, str], headers: Mapping[str, str],
                 body: Any) -> dict[str, Any]:
        """key -> the API's document for this read. Empty when the body has no document
        where the route says (the pipeline skips it: no_document). Raises InvalidKey."""
        assert self.entity_spec is not None
        entity = self.entity_spec
        document = self.document(body)
        if self.const_key is not None:  # a scalar list (or any document) with one fixed key
            return {} if document is None else {self.const_key: document}
        if self.is_list:
            if not isinstance(document, list):
                return {}
            controls: dict[str, Any] = {}
            for index, item in enumerate(document):
                if not isinstance(item, dict):
                    raise InvalidKey(f"{self.name}: item [{index}] is not an object")
                controls[entity.validate_key(item.get(entity.id_field))] = item
            return controls
        if not isinstance(document, dict):
            return {}
        if self.key.kind == "path":
            raw = match.params.get(self.key.name)
        elif self.key.kind == "query":
            raw = query.get(self.key.name)
        elif self.key.kind == "header":
            raw = header_value(headers, self.key.name)
        elif self.key.kind == "claim":  # the reader's own record (`GET /api/user`)
            reader = self.reader
            raw = None if reader is None else jwt_claim(header_value(headers, reader.header), self.key.name,
                                                        reader.schemes)
        else:
            raw = document.get(entity.id_field)
        if raw is None:
            raise InvalidKey(f"{self.name}: no key in {self.key.kind} {self.key.name or entity.id_field!r}")
        if self.key_normalize and isinstance(raw, str):
            for step in self.key_normalize:
                raw = raw.lower() if step == "lower" else raw.strip()
        return {entity.validate_key(raw): document}


class RouteMatch(NamedTuple):
    """A matched request: its route and path parameters (a tuple: cheapest to build,
    it is made on the proxy's request path)."""

    route: Route
    params: Mapping[str, str]
