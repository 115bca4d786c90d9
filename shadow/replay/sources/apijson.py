"""BSON -> the API's JSON shape (Mongoose `toJSON()`), generic for any collection:
ObjectId -> 24-hex string, datetime -> `toISOString()` (UTC, ms), Decimal128 ->
{"$numberDecimal": "..."}, `__v` and the entity's `hidden` fields dropped. Used by the
mongo source after a read flip and by `shadow compare` to build the control."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import Decimal128, ObjectId

from normalizers.values import iso_ms
from shadow.rules.spec import Entity


def to_api_json(value: Any) -> Any:
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        return iso_ms(value)
    if isinstance(value, Decimal128):
        return {"$numberDecimal": str(value)}
    if isinstance(value, dict):
        return {key: to_api_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_api_json(item) for item in value]
    return value


def api_document(entity: Entity, document: dict[str, Any]) -> dict[str, Any]:
    """One stored document as the API shows it."""
    hidden = entity.hidden
    return {key: to_api_json(value) for key, value in document.items() if key != "__v" and key not in hidden}
