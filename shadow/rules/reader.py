"""Typed reading of one rule file's YAML with file:line errors: the parser calls these
instead of indexing dicts, so every problem is collected (not just the first) and
names the file, the line, the key and the bad value."""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from shadow.rules.issues import RuleIssue
from shadow.rules.yamltree import YList, YMap

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
#: a document path: `amount.value`, `offers[*].status` (list indices written [*])
DOC_PATH = re.compile(r"^[^.\[\]\s]+(\[\*\])*(\.[^.\[\]\s]+(\[\*\])*)*$")
#: a `redact_names:` entry: words joined by `.`, `_` or `-` (`taxId`, `card.number`)
REDACT_NAME = re.compile(r"^[A-Za-z0-9]+([._-][A-Za-z0-9]+)*$")


def show(value: Any) -> str:
    """A bad value as the message shows it (short)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def kind_of(value: Any) -> str:
    if isinstance(value, YMap | dict):
        return "a mapping"
    if isinstance(value, YList | list):
        return "a list"
    if value is None:
        return "empty"
    return f"{type(value).__name__} {show(value)}"


class Reader:
    """Collects the issues of one file."""

    def __init__(self, file: str, normalizer_modules: frozenset[str] = frozenset()) -> None:
        self.file = file
        self.issues: list[RuleIssue] = []
        #: modules `as: package.module:function` may import from (RulesPolicy)
        self.normalizer_modules = normalizer_modules

    def error(self, line: int, message: str) -> None:
        self.issues.append(RuleIssue(self.file, line, message))

    def keys(self, mapping: YMap, allowed: Iterable[str], where: str, required: Iterable[str] = ()) -> bool:
        """Report unknown and missing keys; True when there were none."""
        allowed = tuple(allowed)
        clean = True
        for key in mapping:
            if key not in allowed:
                self.error(mapping.line_of(key), f"unknown key {key!r} in {where} (allowed: {', '.join(allowed)})")
                clean = False
        for key in required:
            if key not in mapping:
                self.error(mapping.line, f"{where}: missing required key {key!r}")
                clean = False
        return clean

    def string(self, mapping: YMap, key: str, where: str, default: str | None = None,
               pattern: re.Pattern[str] | None = None, choices: tuple[str, ...] = ()) -> str | None:
        if key not in mapping:
            return default
        value = mapping[key]
        line = mapping.line_of(key)
        if not isinstance(value, str):
            self.error(line, f"{where}: {key!r} must be a string, got {kind_of(value)}")
            return default
        if choices and value not in choices:
            self.error(line, f"{where}: {key!r} must be one of {', '.join(choices)}, got {show(value)}")
            return default
        if pattern is not None and not pattern.match(value):
            self.error(line, f"{where}: {key!r} is not a valid name: {show(value)}")
            return default
        return value

    def boolean(self, mapping: YMap, key: str, where: str, default: bool) -> bool:
        if key not in mapping:
            return default
        value = mapping[key]
        if not isinstance(value, bool):
            self.error(mapping.line_of(key), f"{where}: {key!r} must be true or false, got {kind_of(value)}")
            return default
        return value

    def number(self, mapping: YMap, key: str, where: str, default: float, low: float, high: float) -> float:
        if key not in mapping:
            return default
        value = mapping[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            self.error(mapping.line_of(key),
                       f"{where}: {key!r} must be a number from {low:g} to {high:g}, got {kind_of(value)}")
            return default
        return float(value)

    def duration(self, mapping: YMap, key: str, where: str, default: float) -> float:
        """Seconds from `2`, `2.5`, `2s`, `500ms`, `1m`."""
        if key not in mapping:
            return default
        value = mapping[key]
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
        match = re.match(r"^(\d+(?:\.\d+)?)\s*(ms|s|m)$", value) if isinstance(value, str) else None
        if match is None:
            self.error(mapping.line_of(key),
                       f"{where}: {key!r} must be a duration like 2s, 500ms or 0, got {kind_of(value)}")
            return default
        return float(match.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match.group(2)]

    def strings(self, mapping: YMap, key: str, where: str, pattern: re.Pattern[str] | None = None) -> tuple[str, ...]:
        """A list of strings (a single string is a list of one)."""
        if key not in mapping:
            return ()
        value = mapping[key]
        items = YList([value]) if isinstance(value, str) else value
        if isinstance(value, str):
            items.line, items.lines = mapping.line_of(key), [mapping.line_of(key)]
        if not isinstance(items, YList):
            self.error(mapping.line_of(key), f"{where}: {key!r} must be a list of strings, got {kind_of(value)}")
            return ()
        found = []
        for index, item in enumerate(items):
            if not isinstance(item, str):
                self.error(items.line_of(index), f"{where}: {key!r} items must be strings, got {kind_of(item)}")
            elif pattern is not None and not pattern.match(item):
                self.error(items.line_of(index), f"{where}: bad {key!r} entry {show(item)}")
            else:
                found.append(item)
        return tuple(found)
