"""The canonical form as it was before compiled plans (shadow/compare.py at the issue 3
benchmark): a straightforward walk dispatching on the spec per value. Kept only as the
reference the compiled plans must equal (tests/compare/test_plans.py)."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from normalizers.rows import multiset
from normalizers.values import canonical_number
from shadow.compare.canonical import FALSE, TRUE, Flag
from shadow.rules.spec import Entity, Field


def _iso_ms(moment: datetime) -> str:
    """iso_ms as it was: fields formatted one by one."""

    if moment.tzinfo is not None and moment.utcoffset():
        moment = moment.astimezone(UTC)
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:"
            f"{moment.second:02d}.{moment.microsecond // 1000:03d}Z")


def reference_canonical(entity: Entity, document: Any) -> Any:
    """The canonical form of one API-shaped document."""
    if not isinstance(document, dict):
        return _canon(document, None, "", entity)
    return _canon_object(document, entity.fields, "", entity)


def _canon_object(document: Mapping[str, Any], specs: Mapping[str, Field] | None, path: str,
                  entity: Entity) -> dict[str, Any]:
    ignore = entity.ignore
    drop_empty = entity.null_is_missing
    canon: dict[str, Any] = {}
    for name, value in document.items():
        if ignore:  # paths are only needed to drop ignored fields
            here = f"{path}.{name}" if path else str(name)
            if here in ignore:
                continue
        else:
            here = ""
        value = _canon(value, specs.get(name) if specs else None, here, entity)
        if drop_empty and (value is None or value == {}):
            continue
        canon[name] = value
    return canon


def _canon(value: Any, spec: Field | None, path: str, entity: Entity) -> Any:
    if spec is not None and spec.transforms:
        for transform in spec.transforms:
            try:
                value = transform.apply(value)
            except (ValueError, TypeError, ArithmeticError, KeyError):
                break  # unreadable: keep the raw value, it shows up as a mismatch
    if isinstance(value, bool):
        return TRUE if value else FALSE
    if isinstance(value, str) or value is None or isinstance(value, int | Flag):
        return value
    if isinstance(value, dict):
        return _canon_object(value, spec.children if spec is not None else None, path, entity)
    if isinstance(value, list):
        item_path = path + "[*]" if entity.ignore else ""
        if spec is not None and spec.kind == "rows":
            if spec.value is not None:
                items = [_canon(item, spec.value, item_path, entity) for item in value]
            else:
                items = [_canon_object(item, spec.children, item_path, entity) if isinstance(item, dict)
                         else _canon(item, None, item_path, entity) for item in value]
            return multiset(items, spec.natural_key) if spec.unordered else items
        return [_canon(item, None, item_path, entity) for item in value]
    if isinstance(value, Decimal):
        return canonical_number(value)
    if isinstance(value, float):
        return canonical_number(Decimal(repr(value)))
    if isinstance(value, datetime):
        return _iso_ms(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, tuple):
        return _canon(list(value), spec, path, entity)
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "to_decimal"):  # bson.Decimal128
        return canonical_number(value.to_decimal())
    if type(value).__name__ == "ObjectId":
        return str(value)
    return value
