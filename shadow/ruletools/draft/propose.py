"""From the catalog, the sampled shapes and the probes to a `Draft`: which collection is
which table (by the sampled `_id`s found in a key column, else by name), the fields of
each (fields.py), `stored:` facts (version key, defaults of fields seen absent) and the
TODO list of everything left unmatched. Pure: runs after the stores were read."""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from shadow.ruletools.draft.catalog import Catalog, Column, Table
from shadow.ruletools.draft.fields import Matcher
from shadow.ruletools.draft.names import IDENTIFIER, squashed
from shadow.ruletools.draft.proposal import Default, Draft, EntityProposal, FieldProposal, Probes
from shadow.ruletools.draft.sample import CollectionShape
from shadow.ruletools.draft.verifysets import set_candidates

VERSION_KEYS = ("__v",)  # Mongoose's version key: never a column, dropped by toJSON
KEY_COLUMNS = ("legacy_object_id", "legacy_id", "mongo_id", "object_id")


_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def spellable(table: str) -> bool:
    """A table name the rule format can hold (`table` or `schema.table`, identifiers)."""
    return bool(_TABLE.match(table))


def key_candidates(table: Table) -> list[str]:
    """Text columns unique over the whole table: where a legacy `_id` can live."""
    if not spellable(table.name):
        return []
    found = [column.name for column in table.columns if column.family == "text" and table.is_unique((column.name,))
             and IDENTIFIER.match(column.name)]
    return sorted(found, key=lambda name: (name not in KEY_COLUMNS, name))


def match_tables(catalog: Catalog, shapes: Sequence[CollectionShape], probes: Probes
                 ) -> tuple[dict[str, tuple[str, str, float, str]], list[str]]:
    """collection -> (table, key column, confidence, reason); TODOs for the unmatched."""
    matched: dict[str, tuple[str, str, float, str]] = {}
    todos = []
    taken: set[str] = set()
    for shape in shapes:
        hits = sorted((hit for hit in probes.key_hits.get(shape.name, ()) if hit.hits and hit.table not in taken),
                      key=lambda hit: -hit.hits)
        if hits:
            best = hits[0]
            matched[shape.name] = (best.table, best.column, 0.95 if best.hits == best.probed else 0.8,
                                   f"{best.hits}/{best.probed} sampled _ids found in {best.table}.{best.column}")
            taken.add(best.table)
            continue
        named = [name for name, table in catalog.tables.items() if squashed(name.rpartition(".")[2]) ==
                 squashed(shape.name) and name not in taken and key_candidates(table)]
        if len(named) == 1:
            table = catalog.tables[named[0]]
            matched[shape.name] = (named[0], key_candidates(table)[0], 0.6,
                                   "named like the collection; no sampled _id found in it (empty or not backfilled?)")
            taken.add(named[0])
            continue
        todos.append(f"collection {shape.name!r} ({shape.documents} sampled): no table holds its sampled _ids"
                     + (f" and {len(named)} are named like it" if named else " or is named like it"))
    return matched, todos


def table_collections(catalog: Catalog, matched: Mapping[str, tuple[str, str, float, str]]) -> dict[str, str]:
    """table -> its id_map collection: the matched ones, then id_map names that fit a table."""
    found = {table: collection for collection, (table, *_rest) in matched.items()}
    for collection in catalog.id_map_collections:
        if collection in found.values():
            continue
        named = [name for name, table in catalog.tables.items() if squashed(name.rpartition(".")[2]) ==
                 squashed(collection) and name not in found and key_candidates(table)]
        if len(named) == 1:
            found[named[0]] = collection
    return found


def entity_name(table: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", table.replace(".", "_")) or "entity"
    if not IDENTIFIER.match(base):
        base = f"e_{base}"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def literal_default(column: Column) -> tuple[bool, Any]:
    """The value of a column's DEFAULT when it is a plain literal (true, 0, 'x'::type)."""
    text = (column.default or "").strip()
    if text in ("true", "false"):
        return True, text == "true"
    if re.fullmatch(r"-?\d+", text):
        return True, int(text)
    quoted = re.fullmatch(r"'((?:[^']|'')*)'(::[\w .\"]+)?", text)
    if quoted:
        return True, quoted.group(1).replace("''", "'")
    return False, None


def stored_defaults(fields: Sequence[FieldProposal], shape: CollectionShape, table: Table,
                    parent: str = "") -> list[Default]:
    """Fields some sampled documents lack whose NOT NULL column has a literal DEFAULT:
    the API (Mongoose) fills them on read, PostgreSQL stored the default."""
    found = []
    for spec in fields:
        path = f"{parent}.{spec.name}" if parent else spec.name
        if spec.kind == "object":
            found.extend(stored_defaults(spec.fields, shape, table, path))
            continue
        seen = shape.paths.get(path)
        column = table.column(spec.column) if spec.kind == "column" and spec.column else None
        if seen is None or column is None or not seen.absent or column.nullable:
            continue
        ok, value = literal_default(column)
        if ok:
            found.append(Default(path, value, f"absent in {seen.absent} of {seen.containers} sampled; "
                                              f"{table.name}.{column.name} NOT NULL DEFAULT {column.default}"))
    return found


def propose(catalog: Catalog, shapes: Sequence[CollectionShape], probes: Probes) -> Draft:
    matched, todos = match_tables(catalog, shapes, probes)
    collections = table_collections(catalog, matched)
    names: set[str] = set()
    entities = []
    used: set[str] = set()
    for shape in shapes:
        if shape.name not in matched:
            continue
        table_name, key, confidence, reason = matched[shape.name]
        table = catalog.tables[table_name]
        matcher = Matcher(catalog, shape, probes, collections)
        matcher.claim(table_name, key, *table.primary_key)
        skip = frozenset({"_id", *VERSION_KEYS})
        key_field = FieldProposal("_id", "column", confidence, f"the legacy _id: {reason}", column=key)
        id_kinds = shape.paths["_id"].kinds() if "_id" in shape.paths else {"objectid"}
        key_type = "string" if id_kinds == {"string"} else "objectid"
        if id_kinds - {"objectid"} and key_type != "string":
            matcher.todo("_id", f"keys of several types or not strings ({shape.paths['_id'].summary()}): "
                                "rules take ObjectId or string keys")
        fields = (key_field, *matcher.fields("", table, (), skip))
        version = next((name for name in VERSION_KEYS if name in shape.paths and table.column(name) is None), None)
        version_reason = (f"{version}: in {shape.paths[version].present} of {shape.documents} sampled, "
                          "no column: Mongoose's version key, dropped") if version else ""
        unread = [f"column {t}.{column.name} ({column.declared}) is read by no field"
                  for t in matcher.tables_used for column in catalog.tables[t].columns
                  if column.name not in matcher.claimed.get(t, set())]
        used.update(matcher.tables_used)
        empty = [f"{shape.name}: the collection is empty: no field could be proposed"] if not shape.documents else []
        entity_todos = tuple([*empty, *(f"{shape.name}: {problem}" for problem in shape.problems), *matcher.todos,
                              *unread])
        entities.append(EntityProposal(
            entity_name(table_name, names), shape.name, table_name, confidence, reason, key, fields, version,
            version_reason, tuple(stored_defaults(fields, shape, table)), todos=entity_todos, key_type=key_type,
            set_candidates=tuple(set_candidates(table, key, fields))))
    for name, table in catalog.tables.items():
        if not spellable(name):
            todos.append(f"table {name!r}: a name rules cannot spell (identifiers only): rename it or add a view")
        elif name not in used and name != "id_map" and key_candidates(table):
            todos.append(f"table {name!r}: no sampled collection maps to it")
    return Draft(tuple(entities), tuple(todos))
