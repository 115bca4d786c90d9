"""Redaction: the one place that decides which values never leave the process — the
mismatch log, /mismatches (JSON and page), deepdiff explanations, `shadow compare`
output. (Spans and metrics carry entity, route, outcome, key and field paths, never
field values.)

A value is hidden when
- its path names a secret: one of DEFAULT_NAMES, or an entity's `redact_names:` from
  the rules, matched case-insensitively across camelCase, snake_case, kebab-case and
  dotted paths (`apiKey`, `api_key`, `X-Api-Key` and `api.key` are the same name), or
- its collapsed path, or an object containing it, is one of the entity's `redact:`
  paths.
Whatever a name or path hides, everything below it is hidden too.

Matching, per name: the name's words (`card.number` -> card, number) must appear in a
row among the path's words (`payment.cardNumber` -> payment, card, number), a word
also matching its plural (`tokens`). Names of four letters or more also match inside
a run-together word (`passwordhash`, `xapikey`); shorter ones (`ssn`, `cvv`) only as
whole words, so `businessName` stays visible.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shadow.model import FieldDiff
    from shadow.rules.spec import Entity

REDACTED = "[redacted]"

#: secrets by name, wherever they appear (extended per entity by `redact_names:`)
DEFAULT_NAMES: tuple[str, ...] = (
    "password", "passwd", "token", "secret", "hash", "salt",
    "apiKey", "privateKey", "accessKey", "authorization", "cookie", "credential",
    "ssn", "cvv", "cvc", "card.number", "iban",
)
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_SUBSTRING_MIN = 4


def words(text: str) -> tuple[str, ...]:
    """Lower-case words of a name or path: `cardNumber`, `card_number`, `card.number`
    and `CARD-NUMBER` all give ('card', 'number')."""
    return tuple(word.lower() for word in _WORD.findall(text))


@dataclass(frozen=True)
class _Name:
    words: tuple[str, ...]
    squashed: str  # the words run together, for the substring match


@lru_cache(maxsize=64)
def _compile(names: tuple[str, ...]) -> tuple[_Name, ...]:
    compiled = []
    for name in names:
        name_words = words(name)
        if name_words:
            compiled.append(_Name(name_words, "".join(name_words)))
    return tuple(compiled)


def _same_word(name_word: str, path_word: str) -> bool:
    return path_word == name_word or path_word == name_word + "s" or path_word == name_word + "es"


def _names_match(names: tuple[_Name, ...], path_words: tuple[str, ...], squashed_segments: list[str]) -> bool:
    for name in names:
        if len(name.squashed) >= _SUBSTRING_MIN and any(name.squashed in segment for segment in squashed_segments):
            return True
        size = len(name.words)
        for start in range(len(path_words) - size + 1):
            if all(_same_word(name.words[i], path_words[start + i]) for i in range(size)):
                return True
    return False


def _segments(path: str) -> list[str]:
    return [part.split("[", 1)[0] for part in path.split(".") if part]


def names_hide(path: str, names: tuple[str, ...] = DEFAULT_NAMES) -> bool:
    """True when the collapsed `path` (or an object containing it) is named as a secret."""
    segments = _segments(path)
    path_words: tuple[str, ...] = ()
    squashed: list[str] = []
    for segment in segments:
        segment_words = words(segment)
        path_words += segment_words
        squashed.append("".join(segment_words))
    return _names_match(_compile(names), path_words, squashed)


def is_sensitive(name: str) -> bool:
    """One field name, by the default names."""
    return names_hide(name)


_HIDDEN_CACHE: dict[tuple[str, frozenset[str], tuple[str, ...]], bool] = {}
_HIDDEN_CACHE_SIZE = 20000


def path_is_redacted(path: str, redact_paths: frozenset[str], names: tuple[str, ...] = DEFAULT_NAMES) -> bool:
    """True when the collapsed `path`, or an object that contains it, is to be hidden.
    Memoized (bounded): a mismatch storm asks about the same few paths again and again."""
    cache_key = (path, redact_paths, names)
    known = _HIDDEN_CACHE.get(cache_key)
    if known is None:
        if len(_HIDDEN_CACHE) >= _HIDDEN_CACHE_SIZE:
            _HIDDEN_CACHE.clear()
        known = _HIDDEN_CACHE[cache_key] = _path_is_redacted(path, redact_paths, names)
    return known


def _path_is_redacted(path: str, redact_paths: frozenset[str], names: tuple[str, ...]) -> bool:
    if names_hide(path, names):
        return True
    prefix = ""
    for part in path.split("."):
        prefix = f"{prefix}.{part}" if prefix else part
        if prefix in redact_paths or prefix.replace("[*]", "") in redact_paths:
            return True
    return False


def redact_value(value: Any, path: str, redact_paths: frozenset[str], names: tuple[str, ...] = DEFAULT_NAMES) -> Any:
    """A copy of `value` (found at collapsed `path`) with the hidden parts replaced."""
    if path and path_is_redacted(path, redact_paths, names):
        return REDACTED
    if isinstance(value, Mapping):
        return {name: redact_value(item, f"{path}.{name}" if path else str(name), redact_paths, names)
                for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(item, f"{path}[*]", redact_paths, names) for item in value]
    return value


@dataclass(frozen=True)
class Redaction:
    """What one entity hides: its `redact:` paths and the names (defaults + its
    `redact_names:`). Every output of values goes through one of these."""

    paths: frozenset[str] = frozenset()
    names: tuple[str, ...] = DEFAULT_NAMES

    @classmethod
    def of(cls, paths: Iterable[str] = (), extra_names: Iterable[str] = ()) -> Redaction:
        extra = tuple(name for name in extra_names if name not in DEFAULT_NAMES)
        return cls(frozenset(paths), DEFAULT_NAMES + extra)

    @classmethod
    def for_entity(cls, entity: Entity) -> Redaction:
        return cls.of(entity.redact, getattr(entity, "redact_names", ()))

    def hides(self, path: str) -> bool:
        return bool(path) and path_is_redacted(path, self.paths, self.names)

    def value(self, value: Any, path: str = "") -> Any:
        return redact_value(value, path, self.paths, self.names)

    def side(self, value: Any, path: str) -> Any:
        """One side of a diff: absent stays absent (None), the rest is redacted."""
        return None if value is None else redact_value(value, path, self.paths, self.names)

    def diff(self, diff: FieldDiff) -> FieldDiff:
        return replace(diff, control=self.side(diff.control, diff.path), candidate=self.side(diff.candidate, diff.path))

    def diffs(self, diffs: Iterable[FieldDiff]) -> tuple[FieldDiff, ...]:
        return tuple(self.diff(diff) for diff in diffs)


#: for entities the rules do not know (and tests): the default names, no paths
DEFAULT = Redaction()
