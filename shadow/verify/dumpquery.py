"""Order and queries on decoded dump documents, as a Mongo server would apply them:
BSON's comparison order across types, and the query operators verify uses (`keep:`
filters, set conditions, key ranges); any other operator is refused (exit 2)."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from bson import Decimal128, ObjectId

from shadow.verify.dumpfile import DumpError, decode

_RANK = {type(None): 1, int: 3, float: 3, Decimal128: 3, str: 4, dict: 5, list: 6, bytes: 7,
         ObjectId: 8, bool: 9, datetime: 10}


def sort_key(value: Any) -> tuple[int, Any]:
    """BSON's comparison order across types (numbers < strings < objects < … < ObjectId);
    an ObjectId by its 12 bytes (the index reads them in place)."""
    if value.__class__ is ObjectId:
        return 8, value.binary
    rank = _RANK.get(type(value), 20)
    if rank == 3:
        return rank, value.to_decimal() if isinstance(value, Decimal128) else Decimal(repr(value)) \
            if isinstance(value, float) else value
    if rank in (1, 5, 6) or rank == 20:
        return rank, repr(value)
    return rank, value


def first_id(raw: bytes, where: str, start: int = 0) -> Any:
    """The `_id` of a raw document: read in place when it is the first field (mongodump
    writes it first), else by decoding the document."""
    if raw[start + 4] == 0x07 and raw[start + 5:start + 9] == b"_id\x00":
        return ObjectId(raw[start + 9:start + 21])
    size = int.from_bytes(raw[start:start + 4], "little")
    return decode(raw[start:start + size], where).get("_id")


def first_key(raw: bytes, where: str, start: int = 0) -> tuple[int, Any]:
    """sort_key(first_id(...)) without making an ObjectId."""
    if raw[start + 4] == 0x07 and raw[start + 5:start + 9] == b"_id\x00":
        return 8, raw[start + 9:start + 21]
    return sort_key(first_id(raw, where, start))


_OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$type")


def _values(document: Any, path: str) -> list[Any]:
    """What a dotted path holds, arrays traversed as Mongo does (empty: absent)."""
    current = [document]
    for step in path.split("."):
        following = []
        for value in current:
            if isinstance(value, dict) and step in value:
                following.append(value[step])
            elif isinstance(value, list):
                following.extend(item[step] for item in value if isinstance(item, dict) and step in item)
        current = following
    flat = []
    for value in current:
        flat.append(value)
        if isinstance(value, list):
            flat.extend(value)
    return flat


def _same(value: Any, wanted: Any) -> bool:
    if isinstance(value, bool) or isinstance(wanted, bool):  # true is not 1 in a query
        return type(value) is type(wanted) and value == wanted
    return bool(value == wanted)


def _equal(found: list[Any], wanted: Any) -> bool:
    if wanted is None:  # null matches an absent field too
        return not found or any(value is None for value in found)
    return any(_same(value, wanted) for value in found)


def _compare(found: list[Any], operator: str, bound: Any) -> bool:
    key = sort_key(bound)
    for value in found:
        mine = sort_key(value)
        if mine[0] != key[0]:
            continue  # Mongo compares within one type class
        if (operator == "$gt" and mine > key) or (operator == "$gte" and mine >= key) \
                or (operator == "$lt" and mine < key) or (operator == "$lte" and mine <= key):
            return True
    return False


def matches(document: dict[str, Any], query: dict[str, Any]) -> bool:
    """Whether a document matches a query of the operators verify uses (see _OPERATORS,
    `$and`, `$or`); raises DumpError for anything else."""
    for name, condition in query.items():
        if name == "$and":
            if not all(matches(document, part) for part in condition):
                return False
            continue
        if name == "$or":
            if not any(matches(document, part) for part in condition):
                return False
            continue
        if name.startswith("$"):
            raise DumpError(f"query operator {name!r} is not supported with --mongo-dump")
        found = _values(document, name)
        if isinstance(condition, dict) and condition and all(str(key).startswith("$") for key in condition):
            for operator, argument in condition.items():
                if operator not in _OPERATORS:
                    raise DumpError(f"query operator {operator!r} is not supported with --mongo-dump")
                if operator == "$eq" and not _equal(found, argument):
                    return False
                if operator == "$ne" and _equal(found, argument):
                    return False
                if operator == "$in" and not any(_equal(found, item) for item in argument):
                    return False
                if operator == "$nin" and any(_equal(found, item) for item in argument):
                    return False
                if operator == "$exists" and bool(found) != bool(argument):
                    return False
                if operator == "$type":
                    if argument != "objectId":
                        raise DumpError(f"$type {argument!r} is not supported with --mongo-dump")
                    if not any(isinstance(value, ObjectId) for value in found):
                        return False
                if operator in ("$gt", "$gte", "$lt", "$lte") and not _compare(found, operator, argument):
                    return False
        elif not _equal(found, condition):
            return False
    return True
