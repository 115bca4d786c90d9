"""Normalizers at paths inside a json column (`json: c, paths: {a.b: timestamp}`):
applied to both sides before the column is canonicalized. Pure; copies on write."""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_STEP = re.compile(r"^(?P<name>[^\[]+)(?P<stars>(\[\*\])*)$")
Apply = Callable[[Any], Any]


def at_paths(value: Any, paths: tuple[tuple[str, tuple[Apply, ...]], ...]) -> Any:
    for path, transforms in paths:
        value = _at(value, path.split("."), transforms)
    return value


def _at(value: Any, steps: list[str], transforms: tuple[Apply, ...]) -> Any:
    if not steps:
        for transform in transforms:
            try:
                value = transform(value)
            except (ValueError, TypeError, ArithmeticError, KeyError):
                break  # unreadable: kept raw, it shows up as a mismatch
        return value
    match = _STEP.match(steps[0])
    if match is None or not isinstance(value, dict) or match["name"] not in value:
        return value
    copy = dict(value)
    copy[match["name"]] = _items(value[match["name"]], len(match["stars"]) // 3, steps[1:], transforms)
    return copy


def _items(value: Any, depth: int, rest: list[str], transforms: tuple[Apply, ...]) -> Any:
    if depth == 0:
        return _at(value, rest, transforms)
    if not isinstance(value, list):
        return value
    return [_items(item, depth - 1, rest, transforms) for item in value]
