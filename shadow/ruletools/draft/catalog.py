"""The PostgreSQL side of a draft: tables, columns, types, foreign keys, unique and
partial indexes, and the collections `id_map` knows — read once from pg_catalog
(never from user tables, except `id_map`'s distinct collections by a loose index scan).

`read_catalog(connection)` runs at the start of `shadow rules draft`; it returns a
frozen `Catalog` the (pure) proposer matches documents against.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: PostgreSQL types grouped the way a document value can be compared with them
TYPE_FAMILIES: dict[str, str] = {  # pg_type.typname -> family
    "text": "text", "varchar": "text", "bpchar": "text", "citext": "text", "name": "text",
    "uuid": "uuid",
    "int2": "int", "int4": "int", "int8": "int",
    "numeric": "numeric", "float4": "float", "float8": "float",
    "bool": "bool",
    "timestamptz": "timestamp", "timestamp": "timestamp", "date": "date",
    "jsonb": "json", "json": "json",
}


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its type family (text, uuid, int, numeric, float, bool, timestamp,
    date, json, enum, array, other), the declared type, and what the schema says about it."""

    name: str
    declared: str
    family: str
    nullable: bool
    default: str | None = None  # the DEFAULT expression as PostgreSQL prints it
    scale: int | None = None  # numeric(p, s): s; unconstrained numeric: None
    precision: int | None = None  # timestamp(p): p (6 when not given)
    enum_labels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ForeignKey:
    columns: tuple[str, ...]
    table: str  # the referenced table (qualified name as Catalog keys it)
    ref_columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Index:
    name: str
    columns: tuple[str, ...]  # () for expression indexes
    unique: bool
    partial: bool
    predicate: str | None = None  # WHERE of a partial index, as PostgreSQL prints it


@dataclass(frozen=True, slots=True)
class Table:
    name: str  # `table` or `schema.table` outside the public schema
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    indexes: tuple[Index, ...] = ()

    def column(self, name: str) -> Column | None:
        return next((column for column in self.columns if column.name == name), None)

    def fks_to(self, table: str) -> tuple[ForeignKey, ...]:
        return tuple(fk for fk in self.foreign_keys if fk.table == table)

    def fk_of(self, column: str) -> ForeignKey | None:
        return next((fk for fk in self.foreign_keys if fk.columns == (column,)), None)

    def is_unique(self, columns: tuple[str, ...]) -> bool:
        """A whole-table uniqueness (primary key or a non-partial unique index)."""
        return columns == self.primary_key or any(
            index.unique and not index.partial and index.columns == columns for index in self.indexes)


@dataclass(frozen=True, slots=True)
class Catalog:
    tables: Mapping[str, Table]
    id_map: bool = False  # an id_map (collection, legacy_object_id, new_id) table exists
    id_map_collections: tuple[str, ...] = ()
    referenced_by: Mapping[str, tuple[tuple[str, ForeignKey], ...]] = field(
        default_factory=lambda: MappingProxyType({}))

    def children_of(self, table: str) -> tuple[tuple[str, ForeignKey], ...]:
        """(child table, its FK) for every single-column FK pointing at `table`."""
        return self.referenced_by.get(table, ())


_COLUMNS = """
SELECT n.nspname AS schema, c.relname AS table, a.attname AS column, a.attnum AS num,
       format_type(a.atttypid, a.atttypmod) AS declared, a.atttypmod AS typmod,
       t.typname AS typname, t.typtype::text AS typtype, t.typcategory::text AS category, a.atttypid AS typid,
       NOT a.attnotnull AS nullable, pg_get_expr(d.adbin, d.adrelid) AS "default"
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid AND c.relkind IN ('r', 'p')
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY n.nspname, c.relname, a.attnum
"""
_CONSTRAINTS = """
SELECT c.contype::text AS type, c.conrelid AS rel, c.confrelid AS frel, c.conkey AS keys, c.confkey AS fkeys
FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
WHERE c.contype IN ('p', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"""
_INDEXES = """
SELECT i.indrelid AS rel, x.relname AS name, i.indisunique AS unique, i.indpred IS NOT NULL AS partial,
       i.indkey::int2[] AS keys, pg_get_expr(i.indpred, i.indrelid) AS predicate
FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = x.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
"""
_RELATIONS = """
SELECT c.oid AS oid, n.nspname AS schema, c.relname AS table FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"""
_ENUMS = "SELECT enumtypid AS typid, enumlabel AS label FROM pg_enum ORDER BY enumtypid, enumsortorder"
#: distinct collections through the primary key (collection, legacy_object_id): one
#: index probe per collection, whatever the size of id_map
_ID_MAP_COLLECTIONS = """
WITH RECURSIVE c AS (
  (SELECT collection FROM id_map ORDER BY collection LIMIT 1)
  UNION ALL
  SELECT (SELECT m.collection FROM id_map m WHERE m.collection > c.collection ORDER BY m.collection LIMIT 1)
  FROM c WHERE c.collection IS NOT NULL)
SELECT collection FROM c WHERE collection IS NOT NULL LIMIT 10000
"""


def qualified(schema: str, table: str) -> str:
    return table if schema == "public" else f"{schema}.{table}"


def _family(row: Mapping[str, Any]) -> str:
    if row["typtype"] == "e":
        return "enum"
    if row["category"] == "A":
        return "array"
    return TYPE_FAMILIES.get(row["typname"], "other")


def _column(row: Mapping[str, Any], enums: Mapping[int, tuple[str, ...]]) -> Column:
    family = _family(row)
    typmod = int(row["typmod"])
    scale = ((typmod - 4) & 0xFFFF) if family == "numeric" and typmod >= 0 else None
    precision = (typmod if typmod >= 0 else 6) if family == "timestamp" else None
    return Column(row["column"], row["declared"], family, bool(row["nullable"]), row["default"], scale, precision,
                  enums.get(int(row["typid"]), ()))


async def read_catalog(connection: Any) -> Catalog:
    """The catalog of every user schema (asyncpg connection; read-only queries)."""
    enums: dict[int, list[str]] = {}
    for row in await connection.fetch(_ENUMS):
        enums.setdefault(int(row["typid"]), []).append(row["label"])
    frozen_enums = {typid: tuple(labels) for typid, labels in enums.items()}
    names = {int(row["oid"]): qualified(row["schema"], row["table"]) for row in await connection.fetch(_RELATIONS)}
    columns: dict[str, list[Column]] = {}
    by_num: dict[str, dict[int, str]] = {}
    for row in await connection.fetch(_COLUMNS):
        name = qualified(row["schema"], row["table"])
        columns.setdefault(name, []).append(_column(row, frozen_enums))
        by_num.setdefault(name, {})[int(row["num"])] = row["column"]
    primary: dict[str, tuple[str, ...]] = {}
    fks: dict[str, list[ForeignKey]] = {}
    for row in await connection.fetch(_CONSTRAINTS):
        table = names.get(int(row["rel"]))
        if table is None:
            continue
        keys = tuple(by_num[table].get(num, "?") for num in row["keys"])
        if row["type"] == "p":
            primary[table] = keys
            continue
        target = names.get(int(row["frel"]))
        if target is not None:
            fks.setdefault(table, []).append(
                ForeignKey(keys, target, tuple(by_num[target].get(num, "?") for num in row["fkeys"])))
    indexes: dict[str, list[Index]] = {}
    for row in await connection.fetch(_INDEXES):
        table = names.get(int(row["rel"]))
        if table is None:
            continue
        nums = list(row["keys"])
        cols = () if 0 in nums else tuple(by_num[table].get(num, "?") for num in nums)
        indexes.setdefault(table, []).append(Index(row["name"], cols, bool(row["unique"]), bool(row["partial"]),
                                                   row["predicate"]))
    tables = {name: Table(name, tuple(cols), primary.get(name, ()), tuple(fks.get(name, ())),
                          tuple(indexes.get(name, ()))) for name, cols in columns.items()}
    referenced: dict[str, list[tuple[str, ForeignKey]]] = {}
    for name, described in tables.items():
        for fk in described.foreign_keys:
            if len(fk.columns) == 1:
                referenced.setdefault(fk.table, []).append((name, fk))
    id_map = _is_id_map(tables.get("id_map"))
    collections: tuple[str, ...] = ()
    if id_map:
        collections = tuple(row["collection"] for row in await connection.fetch(_ID_MAP_COLLECTIONS))
    return Catalog(MappingProxyType(tables), id_map, collections,
                   MappingProxyType({name: tuple(items) for name, items in referenced.items()}))


def _is_id_map(table: Table | None) -> bool:
    return table is not None and all(table.column(name) is not None
                                     for name in ("collection", "legacy_object_id", "new_id"))
