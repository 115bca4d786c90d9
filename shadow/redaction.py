"""Redaction: which values never leave the process (mismatch log, /mismatches).

A value is hidden when its field name says it is a secret (password, token, secret,
hash, salt — anywhere in the name, any case), or when its collapsed path, or an object
containing it, is one of the entity's `redact` paths from the rules. Pure functions.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
