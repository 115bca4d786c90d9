"""Redaction: which values never leave the process (mismatch log, /mismatches).

A value is hidden when its field name says it is a secret (password, token, secret,
hash, salt — anywhere in the name, any case), or when its collapsed path, or an object
containing it, is one of the entity's `redact` paths from the rules. Pure functions.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shadow.model import FieldDiff
    from shadow.rules.spec import Entity

#: a field whose name contains one of these is redacted wherever it appears
SENSITIVE_WORDS = ("password", "token", "secret", "hash", "salt")
REDACTED = "[redacted]"


def is_sensitive(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SENSITIVE_WORDS)


def _segments(path: str) -> list[str]:
    return [part.split("[", 1)[0] for part in path.split(".") if part]


_REDACTED_CACHE: dict[tuple[str, frozenset[str]], bool] = {}
_REDACTED_CACHE_SIZE = 20000


def path_is_redacted(path: str, redact_paths: frozenset[str]) -> bool:
    """True when the collapsed `path`, or an object that contains it, is to be hidden.
    Memoized (bounded): a mismatch storm asks about the same few paths again and again."""
    cache_key = (path, redact_paths)
    known = _REDACTED_CACHE.get(cache_key)
    if known is None:
        if len(_REDACTED_CACHE) >= _REDACTED_CACHE_SIZE:
            _REDACTED_CACHE.clear()
        known = _REDACTED_CACHE[cache_key] = _path_is_redacted(path, redact_paths)
    return known


def _path_is_redacted(path: str, redact_paths: frozenset[str]) -> bool:
    if any(is_sensitive(segment) for segment in _segments(path)):
        return True
    prefix = ""
    for part in path.split("."):
        prefix = f"{prefix}.{part}" if prefix else part
        if prefix in redact_paths or prefix.replace("[*]", "") in redact_paths:
            return True
    return False


def redact_value(value: Any, path: str, redact_paths: frozenset[str]) -> Any:
    """A copy of `value` (found at collapsed `path`) with sensitive parts replaced."""
    if path and path_is_redacted(path, redact_paths):
        return REDACTED
    if isinstance(value, Mapping):
        return {name: redact_value(item, f"{path}.{name}" if path else str(name), redact_paths)
                for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(item, f"{path}[*]", redact_paths) for item in value]
    return value


# Rule-path-only redaction of one entity (used by `shadow compare`).


def _redacts(redact: tuple[str, ...], path: str) -> bool:
    """True when `path` is a redact path, under one, or holds one (conservative)."""
    for hidden in redact:
        if path == hidden or path.startswith(hidden + ".") or path.startswith(hidden + "["):
            return True
        if hidden.startswith(path + ".") or hidden.startswith(path + "["):
            return True
    return False


def redact_diffs(entity: Entity, diffs: tuple[FieldDiff, ...] | list[FieldDiff]) -> tuple[FieldDiff, ...]:
    """The diffs with the values of the entity's `redact` paths replaced (for logs, views)."""
    from dataclasses import replace

    if not entity.redact:
        return tuple(diffs)
    return tuple(replace(diff, control=REDACTED if diff.control is not None else None,
                         candidate=REDACTED if diff.candidate is not None else None)
                 if _redacts(entity.redact, diff.path) else diff for diff in diffs)


def redact_document(entity: Entity, document: Any, path: str = "") -> Any:
    """A copy of an API-shaped document with the `redact` paths' values replaced."""
    if not entity.redact:
        return document
    if isinstance(document, dict):
        copy = {}
        for name, value in document.items():
            here = f"{path}.{name}" if path else str(name)
            copy[name] = REDACTED if here in entity.redact and value is not None else redact_document(entity, value, here)
        return copy
    if isinstance(document, list):
        here = path + "[*]"
        if here in entity.redact:
            return [REDACTED for _ in document]
        return [redact_document(entity, item, here) for item in document]
    return document
