"""The frozen, typed form of the rule files: what `load_rules` returns.

Parsed once at load (or reload); nothing here does I/O. An `Entity` says how the API
document of one Mongo collection is rebuilt from PostgreSQL; a `Route` says which reads
of the API show that entity and where the key and the document are.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable, Literal, NamedTuple

#: the kinds of field a rule can describe (the one "source" key of a field spec)
FIELD_KINDS = ("column", "ref", "mixed", "object", "json", "rows", "child", "const")

_OBJECT_ID = re.compile(r"^[0-9a-fA-F]{24}$")
MAX_KEY_CHARS = 200


class InvalidKey(ValueError):
    """A key taken from a request or response is not what the entity expects (keys are
    untrusted input: never sent to a database unchecked)."""


@dataclass(frozen=True, slots=True)
class RuleIssue:
    """One problem in a rule file."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class RulesError(Exception):
    """The rules did not load; `.issues` lists every problem with its file:line."""

    def __init__(self, issues: list[RuleIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


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

    def columns(self) -> list[str]:
        """The columns of the *current* row this field reads."""
        if self.kind in ("column", "ref", "json"):
            return [self.column] if self.column else []
        if self.kind == "mixed":
            return [f"{self.column}_ref_kind", f"{self.column}_id", f"{self.column}_external_ref"]
        if self.kind == "object":
            return [column for sub in self.fields for column in sub.columns()]
        if self.kind in ("rows", "child"):
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


@dataclass(frozen=True, slots=True, eq=False)
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
    hidden: tuple[str, ...] = ()  # fields the API never shows (the mongo source drops them)
    known: tuple[KnownDivergence, ...] = ()
    null_is_missing: bool = True  # `"x": null` and no "x" are the same
    file: str = ""
    line: int = 0
    #: compiled per-entity plans (canonical form, rebuild, fetch), made once from the
    #: frozen specs above at load or first use; never part of equality or repr
    plans: dict[str, Any] = field(init=False, default_factory=dict, compare=False, repr=False)

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

    kind: str  # path | query | header | body
    name: str = ""


@dataclass(frozen=True, slots=True)
class ListFilter:
    """`where:` of a complete list route: column = path parameter (resolved to a uuid
    through id_map when `to` names a collection) or column = a constant."""

    column: str
    param: str | None = None
    to: str | None = None
    value: Any = None


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
    source: str = "postgres"  # postgres | mongo
    sample: float = 1.0
    sample_by: str = "random"  # random | key
    recheck: RecheckPolicy = RecheckPolicy()
    is_list: bool = False
    complete: bool = False  # a list that shows every row of its filter: `extra` is checked
    key: KeySource = KeySource("path", "id")
    at: tuple[str, ...] = ()  # where the document / list sits in the body
    where: tuple[ListFilter, ...] = ()
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
            raw = headers.get(self.key.name)
            if raw is None and isinstance(headers, dict):  # plain dicts are case-sensitive
                wanted = self.key.name.lower()
                raw = next((v for k, v in headers.items() if k.lower() == wanted), None)
        else:
            raw = document.get(entity.id_field)
        if raw is None:
            raise InvalidKey(f"{self.name}: no key in {self.key.kind} {self.key.name or entity.id_field!r}")
        return {entity.validate_key(raw): document}


class RouteMatch(NamedTuple):
    """A matched request: its route and path parameters (a tuple: cheapest to build,
    it is made on the proxy's request path)."""

    route: Route
    params: Mapping[str, str]
