"""Built-in value normalizers: pure functions, one hard case each (DESIGN §1).

Each returns the canonical value both sides are lowered to. A value a normalizer
cannot read raises ValueError; the comparison then keeps the raw value (so it shows
up as a mismatch, never as a crash).
"""
from __future__ import annotations

import json
import re
from datetime import date, datetime, timezone
from decimal import Context, Decimal, InvalidOperation
from typing import Any
from uuid import UUID

# ----------------------------------------------------------------------- numbers


#: wide enough for numeric(38,18) and Decimal128 (34 digits) and then some; the default
#: context (28 digits) would round `normalize()` and hide a 1e-18 difference on big amounts
_EXACT = Context(prec=200)


def canonical_number(number: Decimal) -> int | Decimal | str:
    """One representation per numeric value: integral -> int, else normalized Decimal.
    `12.5`, `12.500000000000000000` and 12.5 (double) all become Decimal('12.5').
    Exact: never rounded to a context precision."""
    if not number.is_finite():
        return str(number)  # NaN never equals itself; compare its spelling instead
    if number == number.to_integral_value():
        return int(number)
    return number.normalize(_EXACT)


_EXACT_FLOAT_INT = 2**53  # below it an integral double is exactly its int


def canonical_float(number: float) -> int | Decimal | str:
    """A double's canonical number: its shortest round-tripping spelling as a Decimal
    (0.1 -> Decimal('0.1')), integral -> int; small integral doubles skip the Decimal."""
    if number.is_integer() and -_EXACT_FLOAT_INT < number < _EXACT_FLOAT_INT:
        return int(number)
    return canonical_number(Decimal(repr(number)))


def decimal(value: Any) -> Any:
    """Decimal, scale-insensitive: Decimal128, double, int, string, {"$numberDecimal": s}."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, dict):
        if set(value) != {"$numberDecimal"}:
            raise ValueError(f"not a decimal: {value!r}")
        value = value["$numberDecimal"]
    if isinstance(value, float):
        return canonical_float(value)  # the shortest string that round-trips: 0.1 -> "0.1"
    if hasattr(value, "to_decimal"):  # bson.Decimal128
        value = value.to_decimal()
    try:
        return canonical_number(Decimal(value if isinstance(value, (int, Decimal)) else str(value).strip()))
    except (InvalidOperation, ValueError, TypeError):
        raise ValueError(f"not a decimal: {value!r}") from None


# -------------------------------------------------------------------- timestamps

_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)


def iso_ms(moment: datetime) -> str:
    """JS `Date.toISOString()`: UTC, exactly 3 fraction digits, µs truncated (a JS Date
    holds milliseconds; PostgreSQL timestamptz holds µs)."""
    if moment.__class__ is datetime:  # the C isoformat (truncates to ms), offset cut off
        if moment.tzinfo is not None and moment.tzinfo is not _UTC and moment.utcoffset():
            moment = moment.astimezone(_UTC)
        return moment.isoformat(timespec="milliseconds")[:23] + "Z"
    if moment.tzinfo is not None and moment.utcoffset():
        moment = moment.astimezone(timezone.utc)
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:"
            f"{moment.second:02d}.{moment.microsecond // 1000:03d}Z")


_FRACTION = re.compile(r"(\.\d+)")
_CANONICAL_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
#: match(text) -> truthy when `text` already is a canonical (toISOString) timestamp
canonical_timestamp = _CANONICAL_TIMESTAMP.match


def timestamp(value: Any) -> Any:
    """Timestamp to ms-precision UTC ISO string: datetime (naive = UTC), ISO-8601 strings
    with any offset/fraction, epoch milliseconds, extended JSON {"$date": …}."""
    if value is None:
        return None
    if isinstance(value, str) and _CANONICAL_TIMESTAMP.match(value):
        return value  # already what JS toISOString() writes: the common case
    if isinstance(value, dict):
        if set(value) != {"$date"}:
            raise ValueError(f"not a timestamp: {value!r}")
        value = value["$date"]
        if isinstance(value, dict) and set(value) == {"$numberLong"}:
            value = int(value["$numberLong"])
    if isinstance(value, datetime):
        return iso_ms(value)
    if isinstance(value, date):
        return iso_ms(datetime(value.year, value.month, value.day, tzinfo=timezone.utc))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        from datetime import timedelta

        return iso_ms(_EPOCH + timedelta(milliseconds=int(value)))
    if isinstance(value, str):
        text = value.strip().replace(" ", "T", 1)
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        # fromisoformat on 3.11 accepts 1-6 fraction digits only; cut longer ones (ns)
        text = _FRACTION.sub(lambda m: m.group(1)[:7], text, count=1)
        try:
            return iso_ms(datetime.fromisoformat(text))
        except ValueError:
            raise ValueError(f"not a timestamp: {value!r}") from None
    raise ValueError(f"not a timestamp: {value!r}")


# ------------------------------------------------------------------ identifiers

_OBJECT_ID = re.compile(r"^[0-9a-fA-F]{24}$")


def objectid(value: Any) -> Any:
    """ObjectId as 24 lowercase hex: bson ObjectId, hex string, {"$oid": hex}."""
    if value is None:
        return None
    if isinstance(value, dict) and set(value) == {"$oid"}:
        value = value["$oid"]
    text = str(value)
    if not _OBJECT_ID.match(text):
        raise ValueError(f"not an ObjectId: {value!r}")
    return text.lower()


def uuid(value: Any) -> Any:
    """UUID as its lowercase canonical string."""
    if value is None:
        return None
    return str(value if isinstance(value, UUID) else UUID(str(value)))


# ---------------------------------------------------------------- strings, misc


def string(value: Any) -> Any:
    """Any scalar as its string (numbers, UUIDs, booleans as 'true'/'false')."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def lower_trim(value: Any) -> Any:
    """Strings lower-cased and trimmed (PostgreSQL `lower(btrim(x))` indexes)."""
    return value.strip().lower() if isinstance(value, str) else value


def null_is_missing(value: Any) -> Any:
    """null, "", [] and {} all mean "not set" (the field is dropped on both sides)."""
    return None if value in (None, "", [], {}) else value


def json_blob(value: Any) -> Any:
    """A JSON text parsed into its value (jsonb read as text, or an API that embeds JSON)."""
    if isinstance(value, (str, bytes)):
        try:
            return json.loads(value)
        except ValueError:
            raise ValueError(f"not JSON: {value!r:.80}") from None
    return value


def unordered(value: Any) -> Any:
    """A list compared as a multiset (sorted into a canonical order)."""
    if not isinstance(value, list):
        return value
    from normalizers.rows import multiset

    return multiset(value)


# ------------------------------------------------------------- with an argument


def default(value: Any, fallback: Any) -> Any:
    """null/missing becomes the given value: `{default: 0}`."""
    return fallback if value is None else value


def enum(value: Any, mapping: dict[Any, Any]) -> Any:
    """Map enum spellings: `{enum: {usd: USD}}`; values not in the map stay as they are."""
    try:
        return mapping.get(value, value)
    except TypeError:  # unhashable
        return value


def rename(value: Any, mapping: dict[str, str]) -> Any:
    """Rename keys of an object: `{rename: {old_name: newName}}`."""
    if not isinstance(value, dict):
        return value
    return {mapping.get(key, key): item for key, item in value.items()}


def constant(value: Any, fixed: Any) -> Any:
    """Both sides become the given value (a field whose content is never compared)."""
    return fixed


#: (name, function, takes an argument)
BUILTINS: list[tuple[str, Any, bool]] = [
    ("decimal", decimal, False),
    ("timestamp", timestamp, False),
    ("objectid", objectid, False),
    ("uuid", uuid, False),
    ("string", string, False),
    ("lower_trim", lower_trim, False),
    ("null_is_missing", null_is_missing, False),
    ("json", json_blob, False),
    ("unordered", unordered, False),
    ("default", default, True),
    ("enum", enum, True),
    ("rename", rename, True),
    ("constant", constant, True),
]
