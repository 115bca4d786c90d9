"""Rule files -> a frozen RuleSet, once per load or reload.

Every `*.yaml` / `*.yml` under the directory is read (except the `tests/` folder and
dot-folders such as a Kubernetes ConfigMap's `..data`); each YAML document in them is
one entity with its routes. All problems of all files are collected and raised
together as RulesError, each with file:line and the bad value.
"""
from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast, get_args

from shadow.model import SourceKind
from shadow.policy import RulesPolicy
from shadow.rules.checks import parse_checks
from shadow.rules.fieldspec import parse_fields, parse_transforms
from shadow.rules.issues import RuleIssue, RulesError
from shadow.rules.reader import DOC_PATH, IDENTIFIER, REDACT_NAME, TABLE, Reader, kind_of, show
from shadow.rules.recheck import parse_recheck
from shadow.rules.redaction import parse_redaction
from shadow.rules.routes import METHODS, Router, parse_template, shape
from shadow.rules.spec import (
    Entity,
    KeySource,
    KnownDivergence,
    ListFilter,
    Route,
    RouteMatch,
    SampleBy,
)
from shadow.rules.stored import parse_stored
from shadow.rules.viewspec import (
    ROUTE_VIEW_KEYS,
    check_reader_fields,
    modeled_query,
    parse_list_filter,
    parse_page,
    parse_reader,
    parse_view_key,
)
from shadow.rules.yamltree import YamlProblem, YList, YMap, load_documents

ENTITY_KEYS = ("entity", "collection", "table", "key", "id", "key_type", "id_field", "fields",
               "routes", "ignore", "redact", "hidden", "known", "null_is_missing", "redact_names", "redaction",
               "stored", "verify", "unverifiable", "distinct", "view")
ROUTE_KEYS = ("route", "list", "complete", "at", "key", "where", "sample", "sample_by", "recheck", "source",
              *ROUTE_VIEW_KEYS)


@dataclass(frozen=True, eq=False)
class RuleSet:
    """The loaded rules. `match` is called on the proxy's request path: no I/O."""

    version: str
    entities: Mapping[str, Entity]
    routes: tuple[Route, ...]
    directory: str = ""
    _router: Router = field(default_factory=lambda: Router(()), repr=False)

    def match(self, method: str, path: str) -> RouteMatch | None:
        return self._router.match(method, path)

    def route_named(self, name: str) -> Route | None:
        return next((route for route in self.routes if route.name == name), None)


def rule_files(directory: Path) -> list[Path]:
    """The rule files under `directory`, sorted (what load_rules and version read)."""
    found = []
    for path in directory.rglob("*"):
        parts = path.relative_to(directory).parts
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        if any(part.startswith(".") for part in parts) or "tests" in parts[:-1]:
            continue
        found.append(path)
    return sorted(found)


def read_capped(path: Path, max_bytes: int) -> bytes | None:
    """The file's bytes, or None when it is larger than `max_bytes` (checked before
    reading, and again while reading: the file may grow in between)."""
    if path.stat().st_size > max_bytes:
        return None
    with path.open("rb") as file:
        data = file.read(max_bytes + 1)
    return None if len(data) > max_bytes else data


def load_rules(directory: str | Path, policy: RulesPolicy | None = None) -> RuleSet:
    """Parse and validate every rule file; raises RulesError listing every problem.
    `policy`: the size cap and the modules normalizers may come from (default: 1 MiB,
    built-in normalizers only)."""
    policy = policy or RulesPolicy()
    root = Path(directory)
    if not root.is_dir():
        raise RulesError([RuleIssue(str(root), 0, "rules directory not found")])
    digest = hashlib.sha256()
    issues: list[RuleIssue] = []
    entities: dict[str, Entity] = {}
    routes: list[Route] = []
    seen_routes: dict[tuple[str, str], Route] = {}
    files = rule_files(root)
    if not files:
        raise RulesError([RuleIssue(str(root), 0, "no rule files (*.yaml) in the rules directory")])
    for path in files:
        display = str(path)
        try:
            data = read_capped(path, policy.max_file_bytes)
        except OSError as error:
            issues.append(RuleIssue(display, 0, f"cannot read: {error}"))
            continue
        if data is None:
            issues.append(RuleIssue(display, 1, f"larger than {policy.max_file_bytes} bytes, not read "
                                                "(--rules-max-bytes / SHADOW_RULES_MAX_BYTES)"))
            continue
        digest.update(str(path.relative_to(root)).encode() + b"\0" + data + b"\0")
        reader = Reader(display, policy.normalizer_modules)
        try:
            documents = load_documents(data.decode("utf-8"))
        except UnicodeDecodeError as error:
            issues.append(RuleIssue(display, 1, f"not UTF-8: {error}"))
            continue
        except YamlProblem as problem:
            issues.append(RuleIssue(display, problem.line, problem.message))
            continue
        for document in documents:
            parsed = _entity(reader, document)
            if parsed is None:
                continue
            entity, entity_routes = parsed
            if entity.name in entities:
                first = entities[entity.name]
                reader.error(entity.line, f"entity {entity.name!r} defined twice (first in {first.file}:{first.line})")
                continue
            entities[entity.name] = entity
            for route in entity_routes:
                collision = (route.method, shape(route.template))
                if collision in seen_routes:
                    first_route = seen_routes[collision]
                    reader.error(route.line, f"duplicate route {route.name!r}: same as {first_route.name!r} "
                                             f"({first_route.file}:{first_route.line})")
                    continue
                seen_routes[collision] = route
                routes.append(route)
        issues.extend(reader.issues)
    if issues:
        raise RulesError(issues)
    return RuleSet(digest.hexdigest()[:12], MappingProxyType(entities), tuple(routes), str(root), Router(routes))


def _entity(reader: Reader, document: Any) -> tuple[Entity, list[Route]] | None:
    if not isinstance(document, YMap) or "entity" not in document:
        line = document.line if isinstance(document, YMap | YList) else 1
        reader.error(line, f"a rule document is a mapping starting with 'entity: <name>', got {kind_of(document)}")
        return None
    name = reader.string(document, "entity", "entity", pattern=IDENTIFIER)
    if name is None:
        return None
    where = f"entity {name!r}"
    reader.keys(document, ENTITY_KEYS, where,
                required=("collection", "table") + (() if "distinct" in document else ("fields",)))
    fields = parse_fields(reader, document.get("fields", YMap()), document.line_of("fields"), where, "")
    key_type = reader.string(document, "key_type", where, default="objectid", choices=("objectid", "string"))
    entity = Entity(
        name=name,
        collection=reader.string(document, "collection", where) or "",
        table=reader.string(document, "table", where, pattern=TABLE) or "",
        fields=MappingProxyType({field.name: field for field in fields}),
        key=reader.string(document, "key", where, default="legacy_object_id", pattern=IDENTIFIER) or "legacy_object_id",
        id=reader.string(document, "id", where, default="id", pattern=IDENTIFIER) or "id",
        key_type=key_type or "objectid",
        id_field=reader.string(document, "id_field", where, default="_id") or "_id",
        ignore=reader.strings(document, "ignore", where, pattern=DOC_PATH),
        redact=reader.strings(document, "redact", where, pattern=DOC_PATH),
        redact_names=reader.strings(document, "redact_names", where, pattern=REDACT_NAME),
        redaction=parse_redaction(reader, document, where),
        hidden=reader.strings(document, "hidden", where),
        known=_known(reader, document, where),
        unverifiable=reader.strings(document, "unverifiable", where, pattern=DOC_PATH),
        distinct=reader.string(document, "distinct", where, pattern=IDENTIFIER),
        view=reader.boolean(document, "view", where, False),
        null_is_missing=reader.boolean(document, "null_is_missing", where, True),
        stored=parse_stored(reader, document, where, fields),
        checks=parse_checks(reader, document, {field.name: field for field in fields}, where),
        file=reader.file,
        line=document.line,
    )
    routes_value = document.get("routes", YList())
    if not isinstance(routes_value, YList):
        reader.error(document.line_of("routes"), f"{where}: 'routes' must be a list, got {kind_of(routes_value)}")
        return entity, []
    routes = []
    for index, item in enumerate(routes_value):
        route = _route(reader, entity, item, routes_value.line_of(index))
        if route is not None:
            routes.append(route)
    check_reader_fields(reader, entity, routes)
    return entity, routes


def _known(reader: Reader, document: YMap, where: str) -> tuple[KnownDivergence, ...]:
    value = document.get("known", YList())
    if not isinstance(value, YList):
        reader.error(document.line_of("known"), f"{where}: 'known' must be a list, got {kind_of(value)}")
        return ()
    known = []
    for index, item in enumerate(value):
        line = value.line_of(index)
        if not isinstance(item, YMap):
            reader.error(line, f"{where}: a known divergence is {{path, reason, expires}}, got {kind_of(item)}")
            continue
        if not reader.keys(item, ("path", "reason", "expires"), f"{where} known divergence",
                           ("path", "reason", "expires")):
            continue
        path = reader.string(item, "path", f"{where} known", pattern=DOC_PATH)
        reason = reader.string(item, "reason", f"{where} known")
        expires = item["expires"]
        if isinstance(expires, str):
            with contextlib.suppress(ValueError):
                expires = date.fromisoformat(expires)
        if not isinstance(expires, date):
            reader.error(item.line_of("expires"),
                         f"{where}: 'expires' must be a date like 2027-01-31, got {kind_of(expires)}")
            continue
        if path and reason:
            known.append(KnownDivergence(path, reason, expires, reader.file, line))
    return tuple(known)


def _route(reader: Reader, entity: Entity, item: Any, line: int) -> Route | None:
    options = item if isinstance(item, YMap) else YMap()
    if isinstance(item, YMap):
        line = item.line
        reader.keys(item, ROUTE_KEYS, f"route of {entity.name!r}", required=("route",))
        text = item.get("route")
    else:
        options.line, options.lines = line, {}
        text = item
    if not isinstance(text, str):
        reader.error(line, f"route must be 'METHOD /path/{{param}}', got {kind_of(text)}")
        return None
    method, _, template = text.strip().partition(" ")
    template = template.strip()
    if method.upper() not in METHODS:
        reader.error(line, f"route {show(text)}: unknown method {show(method)} (expected one of {', '.join(METHODS)})")
        return None
    try:
        _, params = parse_template(template)
    except ValueError as error:
        reader.error(line, f"route {show(text)}: bad path template: {error}")
        return None
    method = method.upper()
    name = f"{method} {template}"
    where = f"route {name!r}"
    is_list = reader.boolean(options, "list", where, False)
    view_key = (parse_view_key(reader, options["key"], options.line_of("key"), where, params, is_list)
                if isinstance(options.get("key"), YMap) else None)
    key = view_key[0] if view_key else _key_source(reader, options, where, params, is_list)
    at_text = reader.string(options, "at", where, default="") or ""
    source = cast(SourceKind, reader.string(options, "source", where, default="postgres",
                                            choices=get_args(SourceKind)) or "postgres")
    filters = _where(reader, options, where, params)
    page = parse_page(reader, options, where, is_list)
    route_reader = parse_reader(reader, options, where)
    if key.kind == "claim" and route_reader is None and "reader" not in options:
        reader.error(options.line_of("key"), f"{where}: key {{jwt_claim}} reads the token of the route's "
                                             "'reader: {header, jwt_claim, to}'")
    if any(spec.reader or spec.reader_set for spec in filters) and route_reader is None and "reader" not in options:
        reader.error(options.line_of("where"), f"{where}: a where bound to the reader needs 'reader:' on the route")
    return Route(
        name=name, method=method, template=template, entity=entity.name, param_names=params,
        source=source,
        sample=reader.number(options, "sample", where, 1.0, 0.0, 1.0),
        sample_by=cast(SampleBy, reader.string(options, "sample_by", where, default="random",
                                               choices=get_args(SampleBy)) or "random"),
        recheck=parse_recheck(reader, options, where, method, source),
        is_list=is_list,
        complete=reader.boolean(options, "complete", where, False),
        key=key,
        at=tuple(step for step in at_text.split(".") if step),
        where=filters,
        reader=route_reader,
        page=page,
        query=modeled_query(reader, options, where, filters, page, is_list),
        strict_query=reader.boolean(options, "strict_query", where, False),
        key_normalize=view_key[1] if view_key else (),
        const_key=view_key[2] if view_key else None,
        file=reader.file, line=line, entity_spec=entity,
    )


def _key_source(reader: Reader, options: YMap, where: str, params: tuple[str, ...], is_list: bool) -> KeySource:
    if "key" not in options:
        if is_list or not params:
            return KeySource("body")
        return KeySource("path", "id" if "id" in params else params[-1])
    value, line = options["key"], options.line_of("key")
    if value == "body":
        return KeySource("body")
    if isinstance(value, YMap) and len(value) == 1:
        kind, name = next(iter(value.items()))
        if kind in ("path", "query", "header") and isinstance(name, str) and name:
            if kind == "path" and name not in params:
                reader.error(line, f"{where}: key path parameter {{{name}}} is not in the template")
            if is_list:
                reader.error(line, f"{where}: a list route takes its keys from the body (each item's _id)")
            return KeySource(kind, name)
    reader.error(line,
                 f"{where}: 'key' must be body, {{path: NAME}}, {{query: NAME}} or {{header: NAME}}, got "
                 f"{kind_of(value)}")
    return KeySource("body")


def _where(reader: Reader, options: YMap, where: str, params: tuple[str, ...]) -> tuple[ListFilter, ...]:
    value = options.get("where")
    if value is None:
        return ()
    if not isinstance(value, YMap):
        reader.error(options.line_of("where"),
                     f"{where}: 'where' must map column -> path parameter, got {kind_of(value)}")
        return ()
    filters = []
    for column, spec in value.items():
        line = value.line_of(column)
        if not isinstance(column, str) or not IDENTIFIER.match(column):
            reader.error(line, f"{where}: 'where' key must be a column name, got {show(column)}")
            continue
        if isinstance(spec, str):
            spec_map = YMap(param=spec)
            spec_map.line, spec_map.lines = line, {}
            spec = spec_map
        if not isinstance(spec, YMap):
            reader.error(line,
                         f"{where}: where {column!r} must be a parameter name, {{param, to}}, {{query}} or {{value}}")
            continue
        parsed = parse_list_filter(reader, column, spec, line, where, params, parse_transforms)
        if parsed is not None:
            filters.append(parsed)
    return tuple(filters)
