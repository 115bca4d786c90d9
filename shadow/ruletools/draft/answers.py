"""Routes from recorded API answers (`shadow rules draft --answers DIR`).

The format: one JSON file per recorded answer, `*.json` in DIR, each an object

    {"method": "GET", "path": "/api/users/65a1f0c2e4b0a1b2c3d4e5f6/addresses", "status": 200,
     "body": {"data": [{"_id": "65a1…", …}], "count": 2}}

(any other keys are ignored; a file over `MAX_ANSWER_BYTES`, not JSON, or without these
four keys is listed as a TODO, never fatal). Only 2xx answers are used. A path segment of
24 hex digits is an id: the document's own `_id` makes it the route's key (`{id}`);
another collection's id (found in `id_map`) makes a list filtered by the FK column that
points at that collection. The API's fields no column explains become `unverifiable`
candidates (an aggregate, or a per-reader field); fields the stored documents carry
but no answer ever shows become `hidden:` TODOs. Ids are looked up, never written."""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shadow.ruletools.draft.catalog import Catalog
from shadow.ruletools.draft.proposal import Draft, EntityProposal, RouteProposal
from shadow.ruletools.draft.propose import table_collections
from shadow.ruletools.draft.views import computed_hint, view_entity

MAX_ANSWER_BYTES = 2 * 1024 * 1024
MAX_ANSWERS = 10_000
MAX_PATH_CHARS = 2000
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_HEX24 = re.compile(r"^[0-9a-fA-F]{24}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9._~-]+$")
_VALUE_LIKE = re.compile(r"[0-9]")  # a number, a uuid, a slug with digits: a value the draft must not write
_VERSION = re.compile(r"^v[0-9]{1,2}$")  # /api/v2/... is a literal


@dataclass(frozen=True, slots=True)
class Answer:
    method: str
    path: str  # without the query string
    status: int
    body: Any
    file: str


def read_answers(directory: Path) -> tuple[list[Answer], list[str]]:
    """The usable answers and a problem line for each file that is not one."""
    answers: list[Answer] = []
    problems: list[str] = []
    if not directory.is_dir():
        return [], [f"answers: {directory.name!r} is not a directory"]
    for file in sorted(directory.glob("*.json"))[:MAX_ANSWERS]:
        name = file.name
        try:
            if file.stat().st_size > MAX_ANSWER_BYTES:
                problems.append(f"answer {name!r}: larger than {MAX_ANSWER_BYTES} bytes, not read")
                continue
            record = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
            problems.append(f"answer {name!r}: not a JSON file ({type(error).__name__})")
            continue
        answer = _answer(record, name)
        if isinstance(answer, str):
            problems.append(f"answer {name!r}: {answer}")
        else:
            answers.append(answer)
    return answers, problems


def _answer(record: Any, name: str) -> Answer | str:
    if not isinstance(record, dict):
        return "not a JSON object"
    method, path, status = record.get("method"), record.get("path"), record.get("status")
    if not isinstance(method, str) or method.upper() not in METHODS:
        return f"method must be one of {', '.join(METHODS)}"
    if not isinstance(path, str) or not path.startswith("/") or len(path) > MAX_PATH_CHARS:
        return f"path must be a string starting with / (at most {MAX_PATH_CHARS} characters)"
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        return "status must be an HTTP status code"
    if "body" not in record:
        return "no body"
    path = path.split("?", 1)[0]
    segments = path.strip("/").split("/")
    if any(not _SEGMENT.match(segment) for segment in segments if segment):
        return "path has segments a route template cannot hold"
    return Answer(method.upper(), path, status, record["body"], name)


def documents(body: Any) -> tuple[str | None, bool, list[dict[str, Any]], str]:
    """(where in the body, is a list, the documents carrying a key, the key's name: `_id`
    for stored documents, `id` for view models)."""
    def keyed(item: Any, name: str) -> bool:
        return isinstance(item, dict) and isinstance(item.get(name), str) and bool(_HEX24.match(item[name]))

    for id_field in ("_id", "id"):
        if keyed(body, id_field):
            return None, False, [body], id_field
        if isinstance(body, list) and (not body or any(keyed(item, id_field) for item in body)):
            return None, True, [item for item in body if keyed(item, id_field)], id_field
        if isinstance(body, dict):
            for key, value in body.items():
                if not isinstance(key, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                    continue
                if isinstance(value, list) and (not value or any(keyed(item, id_field) for item in value)):
                    return key, True, [item for item in value if keyed(item, id_field)], id_field
                if keyed(value, id_field):
                    return key, False, [value], id_field
    return None, False, [], "_id"


async def _collections_of(connection: Any, catalog: Catalog, ids: Sequence[str]) -> dict[str, str]:
    if not ids or not catalog.id_map:
        return {}
    rows = await connection.fetch(
        "SELECT m.collection, m.legacy_object_id FROM unnest($1::text[]) AS c(name)"
        " JOIN id_map m ON m.collection = c.name AND m.legacy_object_id = ANY($2::text[])",
        list(catalog.id_map_collections), [i.lower() for i in ids])
    return {row["legacy_object_id"]: row["collection"] for row in rows}


@dataclass
class _Route:
    method: str
    template: str
    is_list: bool
    at: str | None
    where: tuple[tuple[str, str, str], ...]
    answers: int = 0


async def add_routes(draft: Draft, answers: Sequence[Answer], problems: Sequence[str], connection: Any,
                     catalog: Catalog) -> Draft:
    """The draft with routes (and unverifiable / hidden candidates) from the answers."""
    todos = [*draft.todos, *problems]
    usable = [a for a in answers if 200 <= a.status < 300]
    ids = {s.lower() for a in usable for s in a.path.strip("/").split("/") if _HEX24.match(s)}
    ids |= {str(d[f]).lower() for a in usable for _, _, docs, f in [documents(a.body)] for d in docs}
    where_is = await _collections_of(connection, catalog, sorted(ids))
    by_collection = {entity.collection: entity for entity in draft.entities}
    tables = table_collections(catalog, {e.collection: (e.table, e.key, 0.0, "") for e in draft.entities})
    routes: dict[tuple[str, str], dict[tuple[str, str], _Route]] = {}  # (entity, id field) -> routes
    shown: dict[tuple[str, str], Counter[str]] = {}
    seen_docs: Counter[tuple[str, str]] = Counter()
    templates: dict[tuple[str, str], tuple[str, str]] = {}
    for answer in usable:
        at, is_list, docs, id_field = documents(answer.body)
        collections = {where_is.get(str(doc[id_field]).lower()) for doc in docs} - {None}
        if len(collections) != 1:
            todos.append(f"answer {answer.file!r}: "
                         + ("no document with an _id (or id) found in id_map" if not collections else
                            "documents of several collections"))
            continue
        collection = str(next(iter(collections)))
        entity = by_collection.get(collection)
        if entity is None:
            todos.append(f"answer {answer.file!r}: documents of {collection!r}, which was not drafted")
            continue
        route = _template(answer, docs, is_list, at, where_is, entity, catalog, tables, id_field)
        if isinstance(route, str):
            todos.append(f"answer {answer.file!r}: {route}")
            continue
        group = (entity.name, id_field)
        owner = templates.setdefault((route.method, route.template), group)
        if owner != group:
            todos.append(f"answer {answer.file!r}: {route.method} {route.template} also shows documents of "
                         f"{owner[0]!r} in other answers: write this route by hand")
            continue
        routes.setdefault(group, {}).setdefault((route.method, route.template), route).answers += 1
        for doc in docs:
            shown.setdefault(group, Counter()).update(key for key in doc if isinstance(key, str))
            seen_docs[group] += 1
    entities = []
    for entity in draft.entities:
        group = (entity.name, "_id")
        found = [_proposal(r) for r in routes.get(group, {}).values()]
        entities.append(_fields_seen(replace(entity, routes=tuple(found)), shown[group], seen_docs[group],
                                     catalog, tables) if found else entity)
        view = (entity.name, "id")
        if view in routes:
            entities.append(view_entity(entity, tuple(_proposal(r) for r in routes[view].values()), shown[view],
                                        seen_docs[view], catalog, tables))
    return replace(draft, entities=tuple(entities), todos=tuple(todos))


def _proposal(route: _Route) -> RouteProposal:
    return RouteProposal(
        route.method, route.template, min(0.95, 0.6 + 0.1 * route.answers),
        f"{route.answers} recorded answer(s); " + (f"a list at {route.at or 'the body'}" if route.is_list else
                                                   "the id in the path is the document's key"),
        is_list=route.is_list, at=route.at, where=route.where)


def _template(answer: Answer, docs: Sequence[Mapping[str, Any]], is_list: bool, at: str | None,
              where_is: Mapping[str, str], entity: EntityProposal, catalog: Catalog,
              tables: Mapping[str, str], id_field: str) -> _Route | str:
    segments = answer.path.strip("/").split("/")
    ids = [index for index, segment in enumerate(segments) if _HEX24.match(segment)]
    if len(ids) > 1:
        return "more than one id in the path: write this route by hand"
    if any(_VALUE_LIKE.search(s) and not _VERSION.match(s) for i, s in enumerate(segments) if i not in ids):
        return "a path segment looks like a value, not an ObjectId: write this route by hand"
    template = list(segments)
    where: tuple[tuple[str, str, str], ...] = ()
    if ids:
        index = ids[0]
        value = segments[index].lower()
        template[index] = "{id}"
        own = not is_list and len(docs) == 1 and str(docs[0][id_field]).lower() == value
        if not own:
            parent = where_is.get(value)
            table = catalog.tables[entity.table]
            fks = [fk.columns[0] for fk in table.foreign_keys
                   if len(fk.columns) == 1 and tables.get(fk.table) == parent]
            if not is_list or parent is None or len(fks) != 1:
                return (f"the id in the path is not the document's own and {len(fks)} FK(s) of {entity.table} "
                        f"point at its collection: write this route by hand")
            where = ((fks[0], "id", parent),)
    elif not is_list:
        return "a single document with no id in the path: key it by `body` or a query parameter by hand"
    return _Route(answer.method, "/" + "/".join(template), is_list, at, where)


def _fields_seen(entity: EntityProposal, shown: Counter[str], documents: int, catalog: Catalog,
                 tables: Mapping[str, str]) -> EntityProposal:
    """API fields no drafted field explains -> unverifiable candidates; stored fields
    the API never showed -> TODOs (hidden by its serializer?)."""
    names = {spec.name for spec in entity.fields}
    extra = [(key, f"shown in {count} of {documents} recorded documents, rebuilt from no column: "
                   f"{computed_hint(key, entity, catalog, tables)}")
             for key, count in sorted(shown.items()) if key not in names]
    todos = list(entity.todos)
    if documents >= 3:
        todos.extend(f"{entity.collection}.{spec.name}: in the stored documents but in none of {documents} recorded "
                     "answers: add it to `hidden:` (and drop the field) if the API never shows it"
                     for spec in entity.fields if spec.name not in shown)
    todos.extend(f"{entity.name}.{key}: {why}" for key, why in extra)
    return replace(entity, unverifiable=tuple(extra), todos=tuple(todos))
