"""Redaction: the one place that decides which values never leave the process. Every
exit of field values goes through it: the mismatch log, /mismatches (JSON and page),
deepdiff explanations, `shadow compare`, `shadow verify`'s report, error reasons and
keys on the page and in spans, and anything new (the console, the evidence store).

API (everything else here is internal):

  Redaction.for_entity(entity)   what an entity hides (DEFAULT: the built-ins only)
  redaction.value(document)      a copy of a document, values masked   = redact_document()
  redaction.text(string)         a string with its secret parts masked = redact_text()
                                 (cut at MAX_TEXT = 16 KiB characters, the length said)
  redaction.side(value, path)    one side of a diff at a collapsed path (None stays None)
  redaction.diffs(field_diffs)   FieldDiffs with both sides masked
  redaction.kind(path)           "secret", "pii" or None: what the path's name says
  redaction.shown_name(path)     a path or object key as shown (memoized `text`)
  is_mask(text)                  True for one mask (tests; not masking twice)

A masked value keeps what tells two values apart but not the value:
`[secret len=12 h=3fa2c1d0]` (length and a keyed hash, see secretvalues.py), so an
operator still sees *that* and *how* control and candidate differ (a truncated token,
a different hash) without either value leaving the process.

What is masked:
- by name, a value (and everything below it) whose collapsed path names a secret
  (SECRET_NAMES, plus the entity's `redact_names:` / `redaction: {names}`) or PII
  (PII_NAMES, plus `redaction: {pii}`), or whose path is one of the entity's `redact:`
  paths. Names are compared as words: `socialSecurityNumber`, `social_security_number`,
  `Social-Security-Number` and `social.security.number` are the same name, plurals
  too (`tokens`). A name matches a run of the path's words, not a piece of a word
  (`pin` hides `pinCode`, not `shipping`; `key` hides `apiKey`, not `keyword` or
  `monkey`; `pan` not `company`; `sid` not `side`; `pass` not `passenger`) — except that
  names of five letters or more also match inside a run-together word (`passwordhash`,
  `xapikey`, `sessionid`; a one-word name not when only one or two letters are left
  over: `phoneme`, `addressee`). Two exceptions keep useful fields visible:
  a name followed, in the same field name, by a qualifier word (`tokenType`,
  `emailVerified`, `addressCount`, `passwordUpdatedAt`, `keyId`: QUALIFIERS) is about
  the secret, not the secret; and a longer harmless name that contains it (`publicKey`,
  `primaryKey`, `idempotencyKey`: NOT_SECRET, plus the rules' `show:`) wins.
- by value, inside any string not already hidden by name: the value patterns of
  secretvalues.py (JWTs, bearer/basic credentials, URL passwords and secret query
  parameters, `password=…` in free text, PEM bodies, Luhn-valid card numbers, e-mails),
  plus the rules' own patterns; and integers that are Luhn-valid card numbers.
- None and booleans are never masked (whether a secret is set is what one needs to see).

Per entity, the rules extend or relax this (`redaction:` in docs/rules.md): more
secret names, more PII names, more value patterns, names to `show`, built-in
patterns turned off (`show_patterns`), and `show_pii: true` (PII shown as it is).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

from shadow.publish.secretvalues import (
    BUILTIN_PATTERNS,
    PII,
    PII_PATTERNS,
    SECRET,
    ValuePatterns,
    is_card_number,
    is_mask,
    mask,
)
from shadow.publish.secretvalues import apply as apply_spans

if TYPE_CHECKING:
    from shadow.model import FieldDiff
    from shadow.rules.sections import RedactionRules
    from shadow.rules.spec import Entity

__all__ = ["DEFAULT", "DEFAULT_NAMES", "NOT_SECRET", "PII_NAMES", "QUALIFIERS", "REDACTED", "SECRET_NAMES",
           "Redaction", "is_mask", "is_sensitive", "names_hide", "path_is_redacted", "redact_document",
           "redact_text", "redact_value", "words"]

#: the marker of older releases; masks now read `[secret …]` / `[pii …]` (is_mask)
REDACTED = "[redacted]"
#: what a document nested deeper than MAX_DEPTH shows below that depth
MAX_DEPTH = 64
TOO_DEEP = f"[nested deeper than {MAX_DEPTH} levels]"

#: secrets by name, wherever they appear (extended per entity)
SECRET_NAMES: tuple[str, ...] = (
    # passwords and keys
    "password", "passwd", "pwd", "pass", "passphrase", "pin", "secret", "hash", "salt", "key", "apiKey",
    "privateKey", "privKey", "accessKey", "accessKeyId", "secretKey", "pem", "mnemonic", "seedPhrase", "seed.words",
    # tokens, sessions, one-time codes
    "token", "jwt", "bearer", "authorization", "auth", "cookie", "session", "sessionId", "sid", "otp", "totp",
    "mfaCode", "authCode", "verificationCode", "recoveryCode", "backupCode", "resetCode", "signature",
    "credential", "creds",
    # where a service's credentials hide
    "connectionString", "dsn", "databaseUrl", "dbUrl",
    # payment and identity numbers
    "pan", "cvv", "cvc", "securityCode", "card.number", "accountNumber", "routingNumber", "iban",
    "ssn", "socialSecurityNumber", "taxId", "nationalId", "passportNumber",
)
#: personal data by name: masked the same way, shown with `redaction: {show_pii: true}`
PII_NAMES: tuple[str, ...] = (
    "email", "phone", "phoneNumber", "mobileNumber", "msisdn", "address", "street", "postalCode", "zipCode",
    "dob", "dateOfBirth", "birthDate", "birthdate", "birthday",
)
#: harmless names that contain a secret name: they win over the shorter name inside them
NOT_SECRET: tuple[str, ...] = (
    "publicKey", "primaryKey", "foreignKey", "sortKey", "partitionKey", "cacheKey", "idempotencyKey", "lookupKey",
    "dedupKey", "groupKey", "naturalKey", "keyPair.public",
)
#: a word right after a name, in the same field name, that makes the field *about* the
#: secret rather than the secret (`tokenType`, `emailVerified`, `keyId`, `passwordUpdatedAt`)
QUALIFIERS: frozenset[str] = frozenset({
    "id", "ids", "type", "types", "kind", "count", "counts", "total", "expires", "expiry", "expiration", "expired",
    "at", "on", "date", "time", "timestamp", "ttl", "timeout", "lifetime", "created", "updated", "changed", "rotated",
    "verified", "confirmed", "validated", "valid", "status", "state", "length", "len", "size", "set", "enabled",
    "required", "present", "exists", "version", "name", "names", "label", "format", "policy", "algorithm", "alg",
    "scheme", "strength", "url", "uri", "endpoint", "method", "provider", "source", "visible", "hidden", "masked",
    "redacted", "last4", "mask", "pattern", "rule", "rules", "field", "fields", "header", "issuer", "sent",
    "requested", "issued", "generated", "used", "attempts", "retries",
})
#: everything hidden by name by default (the secrets and the PII)
DEFAULT_NAMES: tuple[str, ...] = SECRET_NAMES + PII_NAMES

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_SUBSTRING_MIN = 5
#: words in one field name beyond which it is masked unread (a hostile key, not a field)
MAX_NAME_WORDS = 64
_CACHE_SIZE = 20000
_CACHED_CHARS = 512  # longer paths and keys are judged again each time (hostile, rare)
_MIN_KEY_TO_SCAN = 5  # shorter object keys cannot hold a value pattern
_Judged = TypeVar("_Judged")
#: longest string shown (and scanned); the rest is cut, with its length said
MAX_TEXT = 16384
_CUT_MARGIN = 1024


def _memoized(cache: dict[str, _Judged], name: str, judge: Callable[[str], _Judged]) -> _Judged:
    """`judge(name)`, remembered in `cache` (a mismatch storm asks about the same few
    names again and again); bounded: the cache is emptied when full, and a name longer
    than _CACHED_CHARS is judged again each time, whatever the keys a document holds."""
    try:
        return cache[name]
    except KeyError:
        pass
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    judged = judge(name)
    if len(name) <= _CACHED_CHARS:
        cache[name] = judged
    return judged


def words(text: str) -> tuple[str, ...]:
    """Lower-case words of a name or path: `cardNumber`, `card_number`, `card.number`
    and `CARD-NUMBER` all give ('card', 'number')."""
    return tuple(word.lower() for word in _WORD.findall(text))


@dataclass(frozen=True)
class _Name:
    words: tuple[str, ...]
    squashed: str  # the words run together, for the run-together match


@dataclass(frozen=True)
class _Names:
    """Compiled names, indexed so that matching a path costs a few dictionary look-ups
    per word of the path, not one pass per name (paths come from response bodies:
    `aBaBaB…` must not cost names times words)."""

    by_first: Mapping[str, tuple[_Name, ...]]  # a path word -> names whose first word it is (or its plural)
    by_prefix: Mapping[str, tuple[_Name, ...]]  # a path word -> names whose run-together form starts with it
    long: tuple[_Name, ...]  # names also matched inside a run-together word


@lru_cache(maxsize=256)
def _compile(names: tuple[str, ...]) -> _Names:
    by_first: dict[str, list[_Name]] = {}
    by_prefix: dict[str, list[_Name]] = {}
    long = []
    for text in dict.fromkeys(names):
        name_words = words(text)
        if not name_words:
            continue
        name = _Name(name_words, "".join(name_words))
        for form in (name_words[0], name_words[0] + "s", name_words[0] + "es"):
            by_first.setdefault(form, []).append(name)
        for length in range(1, len(name.squashed) + 1):
            by_prefix.setdefault(name.squashed[:length], []).append(name)
        if len(name.squashed) >= _SUBSTRING_MIN:
            long.append(name)
    return _Names({word: tuple(found) for word, found in by_first.items()},
                  {prefix: tuple(found) for prefix, found in by_prefix.items()}, tuple(long))


def _same_word(name_word: str, path_word: str) -> bool:
    return path_word == name_word or path_word == name_word + "s" or path_word == name_word + "es"


@dataclass(frozen=True)
class _PathWords:
    words: tuple[str, ...]
    segment: tuple[int, ...]  # the segment (field name) each word belongs to


def _path_words(path: str) -> _PathWords | None:
    """The words of a path, or None for a field name of more than MAX_NAME_WORDS words
    (no API has such a field: a hostile key, masked without looking further)."""
    all_words: list[str] = []
    segment_of: list[int] = []
    for index, part in enumerate(path.split(".")):
        part_words = words(part.split("[", 1)[0])
        if len(part_words) > MAX_NAME_WORDS:
            return None
        all_words.extend(part_words)
        segment_of.extend([index] * len(part_words))
    return _PathWords(tuple(all_words), tuple(segment_of))


def _spans(names: _Names, path: _PathWords) -> Iterable[tuple[int, int]]:
    """Where the names occur as runs of the path's words (start, end): word by word
    (`card.number` in `cardNumber`), or run together within one field name
    (`nickname` in `nick_name`)."""
    path_words, segment = path.words, path.segment
    count = len(path_words)
    for start, word in enumerate(path_words):
        for name in names.by_first.get(word, ()):
            size = len(name.words)
            if start + size <= count and all(_same_word(name.words[i], path_words[start + i]) for i in range(1, size)):
                yield start, start + size
        for name in names.by_prefix.get(word, ()):
            joined, end = word, start
            while True:
                if (end > start or len(name.words) > 1) and _same_word(name.squashed, joined):
                    yield start, end + 1
                end += 1
                if end >= count or segment[end] != segment[start] or len(joined) >= len(name.squashed) + 2:
                    break
                joined += path_words[end]
                if not (name.squashed.startswith(joined) or joined.startswith(name.squashed)):
                    break


def _inside(name: _Name, word: str) -> bool:
    """`name` run together with other letters in one word: `passwordhash`, `xapikey`;
    for a one-word name, not when one or two letters are left over (`phoneme` and
    `addressee` are words of their own)."""
    at = word.find(name.squashed)
    while at >= 0:
        before, after = at, len(word) - at - len(name.squashed)
        if len(name.words) > 1 or all(left == 0 or left >= 3 for left in (before, after)):
            return True
        at = word.find(name.squashed, at + 1)
    return False


def _hit(names: _Names, exempt: _Names, path: _PathWords) -> bool:
    covers: list[tuple[int, int]] | None = None
    for start, end in _spans(names, path):
        if end < len(path.words) and path.segment[end] == path.segment[end - 1] and path.words[end] in QUALIFIERS:
            continue
        if covers is None:
            covers = list(_spans(exempt, path))
        if any(low <= start and end <= high for low, high in covers):
            continue
        return True
    for word in path.words:  # a run-together word: `passwordhash`, `xapikey`
        if len(word) > _SUBSTRING_MIN:
            for name in names.long:
                if len(word) > len(name.squashed) and not _same_word(name.squashed, word) and _inside(name, word):
                    return True
    return False


def names_hide(path: str, names: tuple[str, ...] = DEFAULT_NAMES) -> bool:
    """True when the collapsed `path` (or an object containing it) is named by one of `names`."""
    path_words = _path_words(path)
    return path_words is None or _hit(_compile(names), _compile(NOT_SECRET), path_words)


def is_sensitive(name: str) -> bool:
    """One field name, by the default names."""
    return names_hide(name)


def path_is_redacted(path: str, redact_paths: frozenset[str], names: tuple[str, ...] = DEFAULT_NAMES) -> bool:
    """True when the collapsed `path`, or an object that contains it, is to be hidden."""
    return _plain(redact_paths, names).kind(path) is not None


def redact_value(value: Any, path: str, redact_paths: frozenset[str], names: tuple[str, ...] = DEFAULT_NAMES) -> Any:
    """A copy of `value` (found at collapsed `path`) with the hidden parts masked."""
    return _plain(redact_paths, names).value(value, path)


@lru_cache(maxsize=64)
def _plain(redact_paths: frozenset[str], names: tuple[str, ...]) -> Redaction:
    return DEFAULT if not redact_paths and names == DEFAULT_NAMES else Redaction.of(redact_paths, names=names)


def _under(path: str, redact_paths: frozenset[str]) -> bool:
    if not redact_paths:
        return False
    prefix = ""
    for part in path.split("."):
        prefix = f"{prefix}.{part}" if prefix else part
        if prefix in redact_paths or prefix.replace("[*]", "") in redact_paths:
            return True
    return False


@dataclass(frozen=True)
class Redaction:
    """What one entity hides. Build it with `for_entity` (or `of`); every output of
    values goes through one of these."""

    paths: frozenset[str] = frozenset()  # the rules' `redact:` paths
    names: tuple[str, ...] = SECRET_NAMES
    pii_names: tuple[str, ...] = PII_NAMES
    show: tuple[str, ...] = ()  # harmless names that win over the names inside them
    patterns: ValuePatterns = field(default_factory=ValuePatterns)
    _kinds: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)
    _keys: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, paths: Iterable[str] = (), extra_names: Iterable[str] = (), *, names: tuple[str, ...] | None = None,
           pii: Iterable[str] = (), show: Iterable[str] = (), patterns: Iterable[Any] = (),
           show_patterns: Iterable[str] = (), show_pii: bool = False) -> Redaction:
        """`extra_names`/`pii`: more secret / PII names; `show`: names that stay visible
        (a built-in name equal to one is dropped; a longer one wins over the names
        inside it); `patterns`: compiled patterns (re or re2) masked wherever they
        match; `show_patterns`: built-in value patterns turned off. `names` replaces
        the default secret and PII names (older callers)."""
        shown = tuple(show)
        shown_words = {words(name) for name in shown}
        secret_names: tuple[str, ...]
        pii_names: tuple[str, ...]
        if names is not None:
            secret_names, pii_names = names, ()
        else:
            secret_names, pii_names = SECRET_NAMES, () if show_pii else PII_NAMES
        secret_names = tuple(dict.fromkeys((*secret_names, *extra_names)))
        pii_names = tuple(dict.fromkeys((*pii_names, *(() if show_pii else pii))))
        off = set(show_patterns) | (set(PII_PATTERNS) if show_pii else set())
        return cls(
            paths=frozenset(paths),
            names=tuple(name for name in secret_names if words(name) not in shown_words),
            pii_names=tuple(name for name in pii_names if words(name) not in shown_words),
            show=shown,
            patterns=ValuePatterns(frozenset(BUILTIN_PATTERNS) - off, tuple(patterns)),
        )

    @classmethod
    def for_entity(cls, entity: Entity) -> Redaction:
        rules = getattr(entity, "redaction", None)
        if rules is None:
            return cls.of(entity.redact, getattr(entity, "redact_names", ()))
        return _for_entity(tuple(entity.redact), tuple(getattr(entity, "redact_names", ())), rules)

    # -- what a path says

    def kind(self, path: str) -> str | None:
        """SECRET, PII or None for a collapsed path (memoized, bounded: a mismatch storm
        asks about the same few paths again and again)."""
        return _memoized(self._kinds, path, self._kind)

    def _kind(self, path: str) -> str | None:
        if not path:
            return None
        path_words = _path_words(path)
        exempt = _compile(NOT_SECRET + self.show)
        if path_words is None or _under(path, self.paths) or _hit(_compile(self.names), exempt, path_words):
            return SECRET
        if _hit(_compile(self.pii_names), exempt, path_words):
            return PII
        return None

    def hides(self, path: str) -> bool:
        return self.kind(path) is not None

    # -- values

    def text(self, text: str) -> str:
        """`text` with the secret parts that value patterns find masked. A string longer
        than MAX_TEXT is cut there (the sink runs on the proxy's event loop: the scan of
        one value stays bounded); the scan reaches a little further, so a secret across
        the cut is masked whole rather than shown in part."""
        if len(text) < _MIN_KEY_TO_SCAN:
            return text
        if len(text) <= MAX_TEXT:
            return apply_spans(text, self.patterns.spans(text, self._name_kind))
        window = text[:MAX_TEXT + _CUT_MARGIN]
        masked = apply_spans(window, self.patterns.spans(window, self._name_kind))
        return f"{masked[:MAX_TEXT]} …[cut: {len(text)} characters in all]"

    def shown_name(self, name: str) -> str:
        """An object key or a path as it may be shown (a token used as a key is masked);
        memoized, bounded: documents and diffs repeat the same few names."""
        return _memoized(self._keys, name, self.text)

    def _name_kind(self, name: str) -> str | None:
        return self.kind(name) if len(name) <= 64 else None

    def value(self, value: Any, path: str = "") -> Any:
        """A copy of `value` (found at collapsed `path`) with the hidden parts masked."""
        return self._walk(value, path, 0)

    def _walk(self, value: Any, path: str, depth: int) -> Any:
        kind = self.kind(path) if path else None
        if kind is not None:
            return mask(value, kind) if depth < MAX_DEPTH else TOO_DEEP
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            if depth >= MAX_DEPTH:
                return TOO_DEEP
            return {(self.shown_name(name) if isinstance(name, str) and len(name) >= _MIN_KEY_TO_SCAN else name):
                    self._walk(item, f"{path}.{name}" if path else str(name), depth + 1)
                    for name, item in value.items()}
        if isinstance(value, list | tuple):
            if depth >= MAX_DEPTH:
                return TOO_DEEP
            return [self._walk(item, f"{path}[*]", depth + 1) for item in value]
        if isinstance(value, int) and not isinstance(value, bool) and "card" in self.patterns.builtin \
                and 10**12 <= value < 10**19 and is_card_number(value):
            return mask(value, SECRET)
        return value

    def side(self, value: Any, path: str) -> Any:
        """One side of a diff: absent stays absent (None), the rest is masked."""
        return None if value is None else self.value(value, path)

    def diff(self, diff: FieldDiff) -> FieldDiff:
        return replace(diff, control=self.side(diff.control, diff.path), candidate=self.side(diff.candidate, diff.path),
                       at=self.shown_name(diff.at), path=self.shown_name(diff.path))

    def diffs(self, diffs: Iterable[FieldDiff]) -> tuple[FieldDiff, ...]:
        return tuple(self.diff(diff) for diff in diffs)


def _for_entity(redact: tuple[str, ...], redact_names: tuple[str, ...], rules: RedactionRules) -> Redaction:
    return _cached_for_entity(redact, redact_names, tuple(rules.names), tuple(rules.pii), tuple(rules.show),
                              tuple(rules.patterns), tuple(rules.show_patterns), bool(rules.show_pii))


@lru_cache(maxsize=256)
def _cached_for_entity(redact: tuple[str, ...], redact_names: tuple[str, ...], names: tuple[str, ...],
                       pii: tuple[str, ...], show: tuple[str, ...], patterns: tuple[str, ...],
                       show_patterns: tuple[str, ...], show_pii: bool) -> Redaction:
    """One Redaction per distinct rule text (its path cache then serves every caller)."""
    from shadow.rules.redaction import compile_pattern

    return Redaction.of(redact, (*redact_names, *names), pii=pii, show=show,
                        patterns=[compile_pattern(pattern) for pattern in patterns],
                        show_patterns=show_patterns, show_pii=show_pii)


#: for entities the rules do not know (and tests): the built-in names and patterns
DEFAULT = Redaction()


def redact_document(document: Any, redaction: Redaction = DEFAULT) -> Any:
    """A copy of `document` with every hidden value masked."""
    return redaction.value(document)


def redact_text(text: str, redaction: Redaction = DEFAULT) -> str:
    """`text` (a reason, a key, a log line) with the secret parts value patterns find masked."""
    return redaction.text(text)
