"""Embedded arrays <-> child rows: grouping a batch's child rows by parent, and the
canonical order of arrays compared as multisets."""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import orjson


def group_rows(rows: Iterable[Mapping[str, Any]], fk: str) -> dict[Any, list[Mapping[str, Any]]]:
    """Child rows of one batch, by their parent key (order of `rows` kept)."""
    grouped: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row[fk]].append(row)
    return grouped


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if hasattr(value, "value") and isinstance(value.value, bool):  # shadow.compare.core.Flag
        return value.value
    return str(value)


def sort_token(value: Any) -> bytes:
    """A total order over any canonical value (its sorted-keys JSON spelling)."""
    try:
        return orjson.dumps(value, default=_json_default, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):  # ints beyond 64 bits, odd keys: slower, never fails
        return json.dumps(value, default=_json_default, sort_keys=True).encode()


def multiset(items: list[Any], key: str | None = None) -> list[Any]:
    """The items in a canonical order, so two arrays with the same elements in any
    order compare equal. `key` names the natural key of object items (sorted by it
    first, then by the whole item, so duplicates of a key stay deterministic)."""
    if key is None:
        return sorted(items, key=sort_token)
    return sorted(items, key=lambda item: (sort_token(item.get(key) if isinstance(item, dict) else item),
                                           sort_token(item)))
