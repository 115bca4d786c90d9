"""BSON -> the API's JSON shape (Mongoose `toJSON()`), generic for any collection:
ObjectId -> 24-hex string, datetime -> `toISOString()` (UTC, ms), Decimal128 ->
{"$numberDecimal": "..."}; then the entity's `stored:` view (rules/stored.py): the version
key and `hidden` fields dropped, renames applied, absent fields given their defaults.
Used by the mongo source after a read flip, by `shadow compare` to build the control and
by `shadow verify` on every scanned document."""
from __future__ import annotations

import copy
import struct
from datetime import datetime
from decimal import Decimal
from typing import Any

from bson import Decimal128, ObjectId

from normalizers.values import iso_ms
from shadow.rules.spec import Entity

_PLAIN = frozenset({str, int, bool, float, type(None)})
_TWO_WORDS = struct.Struct("<QQ")


def to_api_json(value: Any) -> Any:
    cls = value.__class__
    if cls in _PLAIN:  # most values: returned as they are, without an isinstance chain
        return value
    if cls is dict:
        return {key: item if item.__class__ in _PLAIN else to_api_json(item) for key, item in value.items()}
    if cls is datetime:
        return iso_ms(value)
    if cls is ObjectId:
        return str(value)
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        return iso_ms(value)
    if isinstance(value, Decimal128):
        return {"$numberDecimal": decimal128_text(value)}
    if isinstance(value, dict):
        return {key: to_api_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_api_json(item) for item in value]
    return value


def decimal128_text(value: Decimal128) -> str:
    """`str(value)` without bson's pure-Python `to_decimal()` (the bit fields read here,
    then C `Decimal`); NaN, infinities and the rare large-coefficient form go the slow way."""
    number = decimal128_number(value)
    return str(value) if number is None else str(number)


def decimal128_number(value: Decimal128) -> Decimal | None:
    """The Decimal of a Decimal128's common (first) encoding, read from its bit fields;
    None for NaN, the infinities and the rare large-coefficient form."""
    low, high = _TWO_WORDS.unpack(value.bid)
    if (high >> 61) & 3 == 3:  # 0b11 combination field: NaN, Infinity or the 2nd encoding
        return None
    exponent = ((high >> 49) & 0x3FFF) - 6176
    coefficient = ((high & 0x1FFFFFFFFFFFF) << 64) | low
    return Decimal(f"{'-' if high >> 63 else ''}{coefficient}E{exponent}")


def api_document(entity: Entity, document: dict[str, Any]) -> dict[str, Any]:
    """One stored document as the API shows it."""
    view = entity.stored
    hidden = entity.hidden
    drop = view.version_key
    rename = view.rename
    shown: dict[str, Any] = {}
    for key, value in document.items():
        if key == drop or key in hidden or key in view.hidden:
            continue
        shown[rename.get(key, key) if rename else key] = value if value.__class__ in _PLAIN else to_api_json(value)
    for path, default in view.defaults.items():
        _fill(shown, path.split("."), default)
    return shown


def _fill(document: dict[str, Any], steps: list[str], default: Any) -> None:
    """Set `default` at the dotted path when absent (Mongoose fills defaults on read;
    an explicit null stays null). Parents that are absent or not objects are left alone."""
    for step in steps[:-1]:
        inner = document.get(step)
        if not isinstance(inner, dict):
            return
        document = inner
    if steps[-1] not in document:
        document[steps[-1]] = to_api_json(copy.deepcopy(default))
