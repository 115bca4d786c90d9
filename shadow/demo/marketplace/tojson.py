"""The document as the Node/Mongoose backend's `toJSON()` shows it — the control shape.

Runs in the sample API on every answer (and in tests that build expected bodies):
`to_api(collection, doc)` takes a BSON document as PyMongo returns it and gives the
JSON-ready dict the production API would send:

- `_id` and every ObjectId (top level, nested, in arrays) → 24-hex lowercase string
- datetime → JS `Date.prototype.toISOString()`: `2026-01-02T03:04:05.678Z`
  (always UTC, always 3 fraction digits)
- Decimal128 → `{"$numberDecimal": "<the stored string>"}` (Mongoose's
  `Decimal128.toJSON`; the string keeps the writer's scale: "12.5", "100.00", "1E-18")
- `__v` dropped (schemas use `versionKey` but `toJSON` removes it)
- users: `password`, `refreshTokens`, `emailVerificationToken`,
  `emailVerificationExpires` dropped
- schema defaults filled when the field is absent (`DEFAULTS`, as Mongoose does on read);
  other missing fields stay missing, `null` stays `null`, key order is the stored order.

The per-collection field list and its PostgreSQL home are in docs/domain.md.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson import Decimal128, ObjectId

#: fields a collection's toJSON transform deletes (besides `__v`)
HIDDEN_FIELDS: dict[str, frozenset[str]] = {
    "users": frozenset({"password", "refreshTokens", "emailVerificationToken", "emailVerificationExpires"}),
}

#: schema defaults Mongoose fills on read when a stored document lacks the field
DEFAULTS: dict[str, dict[str, Any]] = {
    "users": {"isEmailVerified": False},
    "categories": {"isActive": True},
}


def iso_ms(moment: datetime) -> str:
    """JS `toISOString()`: UTC, millisecond precision (µs truncated, as a JS Date holds ms)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def to_json_value(value: Any) -> Any:
    """One BSON value in its JSON form (recursive)."""
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        return iso_ms(value)
    if isinstance(value, Decimal128):
        return {"$numberDecimal": str(value)}
    if isinstance(value, dict):
        return {key: to_json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(item) for item in value]
    return value


def to_api(collection: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The API's JSON object for one stored document of `collection`."""
    hidden = HIDDEN_FIELDS.get(collection, frozenset())
    shown = {key: to_json_value(value) for key, value in doc.items() if key != "__v" and key not in hidden}
    for name, default in DEFAULTS.get(collection, {}).items():
        shown.setdefault(name, default)
    return shown
