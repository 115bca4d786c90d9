"""Built-in value normalizers: pure functions, one hard case each (DESIGN §1).

Each returns the canonical value both sides are lowered to. A value a normalizer
cannot read raises ValueError; the comparison then keeps the raw value (so it shows
up as a mismatch, never as a crash).

Response bodies are outside input: `decimal` and `timestamp` bound what they read
(text length, significant digits, exponent, epoch range) before any arithmetic, and
turn a value beyond the bounds into an `OutOfRange` marker — a canonical value that
equals only the same marker, never a valid value, so it is reported as a mismatch.
Without the bounds `"1e999999999"` would build a billion-digit int.
"""
from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from decimal import Context, Decimal, InvalidOperation
from typing import Any
from uuid import UUID

# ----------------------------------------------------------------------- numbers


#: significant digits read exactly; wide enough for numeric(38,18) and Decimal128 (34
#: digits) and then some. The default context (28 digits) would round `normalize()` and
#: hide a 1e-18 difference on big amounts; more digits than this are out of range.
MAX_DIGITS = 200
_EXACT = Context(prec=MAX_DIGITS)
#: |adjusted exponent| beyond this is out of range (Decimal128 reaches 6144)
MAX_EXPONENT = 10_000
#: integral values below 10**MAX_INT_DIGITS become ints; larger ones stay Decimals
#: (an int's str() is capped at 4300 digits, and a huge int costs memory)
MAX_INT_DIGITS = 1000
#: longest text read as a number or a timestamp
MAX_NUMBER_TEXT = 2 * MAX_DIGITS
MAX_TIMESTAMP_TEXT = 64


class OutOfRange(str):
    """A canonical value for input beyond a normalizer's bounds: equal only to the same
    marker (never to a valid value), shown as `<out of range decimal: '1e999…'>`."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is OutOfRange and str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = str.__hash__


def out_of_range(kind: str, value: Any) -> OutOfRange:
    shown = repr(value) if not isinstance(value, str) or len(value) <= 40 else repr(value[:40]) + "…"
    if len(shown) > 60:
        shown = shown[:60] + "…"
    return OutOfRange(f"<out of range {kind}: {shown}>")


def canonical_number(number: Decimal) -> int | Decimal | str:
    """One representation per numeric value: integral -> int, else normalized Decimal.
    `12.5`, `12.500000000000000000` and 12.5 (double) all become Decimal('12.5').
    Exact: never rounded to a context precision; beyond MAX_DIGITS significant digits
    or MAX_EXPONENT an OutOfRange marker."""
    if not number.is_finite():
        return str(number)  # NaN never equals itself; compare its spelling instead
    exponent = number.adjusted()
    if not -MAX_EXPONENT <= exponent <= MAX_EXPONENT:
        return out_of_range("decimal", number) if number else 0
    _, digits, _ = number.as_tuple()
    significant = len(digits)
    if significant > MAX_DIGITS:  # trailing zeros do not count (only worth counting here)
        while significant > 1 and digits[significant - 1] == 0:
            significant -= 1
        if significant > MAX_DIGITS:
            return out_of_range("decimal", number)
    if number == number.to_integral_value() and exponent < MAX_INT_DIGITS:
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
    if isinstance(value, int) and value.bit_length() > 4 * MAX_DIGITS:
        return out_of_range("decimal", f"an int of {value.bit_length()} bits")
    if not isinstance(value, (int, Decimal)):
        if not isinstance(value, str):
            raise ValueError(f"not a decimal: {value!r:.80}")
        value = value.strip()
        if len(value) > MAX_NUMBER_TEXT:
            return out_of_range("decimal", value)
    try:
        canonical = canonical_number(Decimal(value))
    except (InvalidOperation, ValueError, TypeError):
        raise ValueError(f"not a decimal: {value!r:.80}") from None
    if isinstance(canonical, OutOfRange) and isinstance(value, str):
        return out_of_range("decimal", value)  # as the input spelled it
    return canonical


# -------------------------------------------------------------------- timestamps

_UTC = UTC
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)


_ISO_MS = "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ"


def iso_ms(moment: datetime) -> str:
    """JS `Date.toISOString()`: UTC, exactly 3 fraction digits, µs truncated (a JS Date
    holds milliseconds; PostgreSQL timestamptz holds µs)."""
    if moment.__class__ is datetime:  # %-formatting: cheaper than isoformat() and its offset
        if moment.tzinfo is not None and moment.tzinfo is not _UTC and moment.utcoffset():
            moment = moment.astimezone(_UTC)
        return _ISO_MS % (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second,
                          moment.microsecond // 1000)
    if moment.tzinfo is not None and moment.utcoffset():
        moment = moment.astimezone(UTC)
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:"
            f"{moment.second:02d}.{moment.microsecond // 1000:03d}Z")


_FRACTION = re.compile(r"(\.\d+)")
_CANONICAL_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
#: match(text) -> truthy when `text` already is a canonical (toISOString) timestamp
canonical_timestamp = _CANONICAL_TIMESTAMP.match


#: epoch milliseconds of 0001-01-01 and of 9999-12-31T23:59:59.999Z (datetime's range)
_MIN_EPOCH_MS = -62135596800000
_MAX_EPOCH_MS = 253402300799999


def timestamp(value: Any) -> Any:
    """Timestamp to ms-precision UTC ISO string: datetime (naive = UTC), ISO-8601 strings
    with any offset/fraction, epoch milliseconds, extended JSON {"$date": …}. Epoch
    values beyond years 1-9999 and texts over MAX_TIMESTAMP_TEXT are OutOfRange."""
    if value is None:
        return None
    if isinstance(value, str) and _CANONICAL_TIMESTAMP.match(value):
        return value  # already what JS toISOString() writes: the common case
    if isinstance(value, dict):
        if set(value) != {"$date"}:
            raise ValueError(f"not a timestamp: {value!r:.80}")
        value = value["$date"]
        if isinstance(value, dict) and set(value) == {"$numberLong"}:
            text = value["$numberLong"]
            if not isinstance(text, str) or len(text) > 20:
                return out_of_range("timestamp", text)
            value = int(text)
    if isinstance(value, datetime):
        return iso_ms(value)
    if isinstance(value, date):
        return iso_ms(datetime(value.year, value.month, value.day, tzinfo=UTC))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        from datetime import timedelta

        if not _MIN_EPOCH_MS <= value <= _MAX_EPOCH_MS:  # also NaN (every comparison is False)
            return out_of_range("timestamp", value)
        return iso_ms(_EPOCH + timedelta(milliseconds=int(value)))
    if isinstance(value, str):
        if len(value) > MAX_TIMESTAMP_TEXT:
            return out_of_range("timestamp", value)
        text = value.strip().replace(" ", "T", 1)
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        # fromisoformat on 3.11 accepts 1-6 fraction digits only; cut longer ones (ns)
        text = _FRACTION.sub(lambda m: m.group(1)[:7], text, count=1)
        try:
            return iso_ms(datetime.fromisoformat(text))
        except ValueError:
            raise ValueError(f"not a timestamp: {value!r}") from None
    raise ValueError(f"not a timestamp: {value!r:.80}")


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
