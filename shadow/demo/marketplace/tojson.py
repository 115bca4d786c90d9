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

The per-collection field list and its PostgreSQL home are in docs/domain.md. The value
conversion is the generic one of the mongo source (shadow.replay.sources.apijson, with
normalizers.values.iso_ms); only the per-collection hidden fields are the demo's.
"""
from __future__ import annotations

from typing import Any

from normalizers.values import iso_ms
from shadow.replay.sources.apijson import to_api_json

__all__ = ["HIDDEN_FIELDS", "iso_ms", "to_api"]

#: fields a collection's toJSON transform deletes (besides `__v`)
HIDDEN_FIELDS: dict[str, frozenset[str]] = {
    "users": frozenset({"password", "refreshTokens", "emailVerificationToken", "emailVerificationExpires"}),
}

#: schema defaults Mongoose fills on read when a stored document lacks the field
DEFAULTS: dict[str, dict[str, Any]] = {
    "users": {"isEmailVerified": False},
    "categories": {"isActive": True},
}


def to_api(collection: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The API's JSON object for one stored document of `collection`."""
    hidden = HIDDEN_FIELDS.get(collection, frozenset())
    shown = {key: to_api_json(value) for key, value in doc.items() if key != "__v" and key not in hidden}
    for name, default in DEFAULTS.get(collection, {}).items():
        shown.setdefault(name, default)
    return shown
