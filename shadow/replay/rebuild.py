"""Rows -> the document the API would have shown (pure; runs in a worker after a
source fetched one batch). Also the fetch plan the PostgreSQL source follows: which
columns of which tables, which child tables at which depth, which uuid columns need
id_map."""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from normalizers.mixed import resolve
from shadow.plancache import PlanCache
from shadow.rules.spec import AGGREGATES, Entity, Field

Row = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Fetched:
    """What one batch read besides the main rows: child rows by field node and parent
    value, and the legacy id of every uuid the documents reference."""

    children: Mapping[str, Mapping[Any, Sequence[Row]]] = field(default_factory=dict)
    legacy_of: Mapping[str, str] = field(default_factory=dict)


def rebuild(entity: Entity, row: Row, fetched: Fetched) -> dict[str, Any]:
    """The API-shaped document of one main row (not yet normalized)."""
    document: dict[str, Any] = _PLANS.get(entity)(row, fetched)
    return document


Build = Callable[[Row, Fetched], Any]


def rebuild_plan(entity: Entity) -> Build:
    """The entity's document builder, compiled once from its field specs (at rule load
    or first use) and kept in this module's cache: one closure per field, no dispatch
    on kinds per row."""
    return _PLANS.get(entity)


def _compile(entity: Entity) -> Build:
    return _object(tuple(entity.fields.values()))


_ABSENT = object()


def _object(fields: Sequence[Field]) -> Build:
    """Builds one object: plain columns read straight from the row, the rest by their
    field's closure (field order kept)."""
    # a field read straight from the row is a `column` field: the loader gave it a column
    steps = tuple((spec.name, spec.column or "",
                   None if spec.kind == "column" and spec.default is None else _value(spec))
                  for spec in fields)

    def build(row: Row, fetched: Fetched) -> dict[str, Any]:
        get = row.get
        document: dict[str, Any] = {}
        for name, column, value in steps:
            document[name] = get(column) if value is None else value(row, fetched)
        return document

    return build


def _value(spec: Field) -> Build:
    """The closure producing one field's value from a row (its `default` included)."""
    build = _kind_value(spec)
    fallback = spec.default
    if fallback is None:
        return build

    def with_default(row: Row, fetched: Fetched) -> Any:
        value = build(row, fetched)
        return fallback if value is None else value

    return with_default


def _kind_value(spec: Field) -> Build:
    kind, column = spec.kind, spec.column or ""  # set by the loader for every kind that reads it
    if kind == "column":
        return lambda row, fetched: row.get(column)
    if kind == "ref":
        def ref(row: Row, fetched: Fetched) -> Any:
            new_id = row.get(column)
            if new_id is None:
                return None
            legacy = fetched.legacy_of.get(str(new_id), _ABSENT)
            return f"<unmapped uuid {new_id}>" if legacy is _ABSENT else legacy
        return ref
    if kind == "mixed":
        kind_column, id_column, external_column = f"{column}_ref_kind", f"{column}_id", f"{column}_external_ref"
        return lambda row, fetched: resolve(row.get(kind_column), row.get(id_column), row.get(external_column),
                                            fetched.legacy_of)
    if kind == "json":
        def blob(row: Row, fetched: Fetched) -> Any:
            value = row.get(column)
            if isinstance(value, str):
                try:
                    return orjson.loads(value)
                except orjson.JSONDecodeError:
                    try:
                        return json.loads(value)  # what orjson refuses (NaN, big ints) json may read
                    except ValueError:
                        pass  # shows as a mismatch against the API's object
            return value
        return blob
    if kind == "const":
        constant = spec.const
        return lambda row, fetched: constant
    if kind == "object":
        return _object(spec.fields)
    node, parent = spec.node, spec.parent
    if kind in AGGREGATES:
        return _aggregate(spec)
    if kind == "child":
        build_child = _object(spec.fields)

        def child(row: Row, fetched: Fetched) -> Any:
            rows = fetched.children.get(node, _NO_ROWS).get(row.get(parent), ())
            return build_child(rows[0], fetched) if rows else None
        return child
    # rows
    build_item = _value(spec.value) if spec.value is not None else _object(spec.fields)

    def items(row: Row, fetched: Fetched) -> Any:
        rows = fetched.children.get(node, _NO_ROWS).get(row.get(parent), ())
        return [build_item(child, fetched) for child in rows]
    return items


_NO_ROWS: Mapping[Any, Sequence[Row]] = {}


def _aggregate(spec: Field) -> Build:
    """count / sum / exists: the one grouped row of this parent (no row: 0 / false)."""
    node, parent, exists = spec.node, spec.parent, spec.kind == "exists"

    def aggregate(row: Row, fetched: Fetched) -> Any:
        rows = fetched.children.get(node, _NO_ROWS).get(row.get(parent), ())
        value = rows[0]["n"] if rows else 0
        if exists:
            return bool(value)
        return 0 if value is None else value
    return aggregate


# ------------------------------------------------------------------ fetch plan


def row_columns(fields: Any) -> list[str]:
    """The columns one row must provide for these fields (children read their own)."""
    columns: list[str] = []
    for spec in fields:
        for column in spec.columns():
            if column not in columns:
                columns.append(column)
    return columns


def uuid_columns(fields: Any) -> list[str]:
    """The uuid columns of one row that id_map must resolve (refs, mixed ids)."""
    columns: list[str] = []
    for spec in fields:
        if spec.kind == "ref" and spec.column:
            columns.append(spec.column)
        elif spec.kind == "mixed":
            columns.append(f"{spec.column}_id")
        elif spec.kind == "object":
            columns.extend(uuid_columns(spec.fields))
    return columns


_PLANS: PlanCache[Build] = PlanCache(_compile)
