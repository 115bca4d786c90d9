"""Rows -> the document the API would have shown (pure; runs in a worker after a
source fetched one batch). Also the fetch plan the PostgreSQL source follows: which
columns of which tables, which child tables at which depth, which uuid columns need
id_map."""
from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from normalizers.mixed import resolve
from shadow.rules.spec import Entity, Field

Row = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Fetched:
    """What one batch read besides the main rows: child rows by field node and parent
    value, and the legacy id of every uuid the documents reference."""

    children: Mapping[str, Mapping[Any, Sequence[Row]]] = field(default_factory=dict)
    legacy_of: Mapping[str, str] = field(default_factory=dict)


def rebuild(entity: Entity, row: Row, fetched: Fetched) -> dict[str, Any]:
    """The API-shaped document of one main row (not yet normalized)."""
    return _object(entity.fields.values(), row, fetched)


def _object(fields: Any, row: Row, fetched: Fetched) -> dict[str, Any]:
    return {spec.name: _value(spec, row, fetched) for spec in fields}


def _value(spec: Field, row: Row, fetched: Fetched) -> Any:
    kind = spec.kind
    if kind == "column":
        value = row.get(spec.column)
    elif kind == "ref":
        new_id = row.get(spec.column)
        value = None if new_id is None else fetched.legacy_of.get(str(new_id), f"<unmapped uuid {new_id}>")
    elif kind == "mixed":
        prefix = spec.column
        value = resolve(row.get(f"{prefix}_ref_kind"), row.get(f"{prefix}_id"),
                        row.get(f"{prefix}_external_ref"), fetched.legacy_of)
    elif kind == "json":
        value = row.get(spec.column)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                pass  # shows as a mismatch against the API's object
    elif kind == "const":
        value = spec.const
    elif kind == "object":
        value = _object(spec.fields, row, fetched)
    elif kind == "child":
        rows = fetched.children.get(spec.node, {}).get(row.get(spec.parent), ())
        value = _object(spec.fields, rows[0], fetched) if rows else None
    else:  # rows
        rows = fetched.children.get(spec.node, {}).get(row.get(spec.parent), ())
        if spec.value is not None:
            value = [_value(spec.value, child, fetched) for child in rows]
        else:
            value = [_object(spec.fields, child, fetched) for child in rows]
    if value is None and spec.default is not None:
        return spec.default
    return value


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


def table_fields(fields: Any) -> Iterator[Field]:
    """The rows/child fields directly under these fields (inside objects too)."""
    for spec in fields:
        if spec.kind in ("rows", "child"):
            yield spec
        elif spec.kind == "object":
            yield from table_fields(spec.fields)


def item_fields(spec: Field) -> tuple[Field, ...]:
    """The fields each row of a rows/child field is read with."""
    return (spec.value,) if spec.value is not None else spec.fields
