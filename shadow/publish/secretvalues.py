"""Secrets by value, and the mask that replaces a hidden value (used by redaction.py).

A mask never holds the value, but says enough to compare two of them:
`[secret len=12 h=3fa2c1d0]`, `[pii len=17 h=9b01e4aa]` for strings, `[secret number h=…]`,
`[secret list n=3 h=…]`, `[secret object n=2 h=…]` for the rest. `h` is the first 8 hex
digits of an HMAC-SHA256 of the value under a key that is random per process, or
SHADOW_REDACTION_KEY (at least 16 characters) when set: equal values give equal masks
within a process (or across processes sharing the key), and nobody without the key can
test a guess (a dictionary of e-mails or 4-digit PINs) against a logged hash.

Value patterns find secrets inside any string, whatever its field is called; only the
secret part is masked (a URL keeps its scheme, host, path and harmless parameters):

  pem         the body of `-----BEGIN …-----` … `-----END …-----` (to the end when unclosed)
  jwt         `eyJ….….…` (JWS, and the first parts of a JWE), also inside free text
  bearer      `Bearer <token>`, `Basic <base64 of user:password>` (a word such as
              `Bearer authentication` is not a token: one needs a digit or a symbol, or 20+ chars)
  url         the password of `scheme://user:password@host` (a bare `scheme://token@host`: the user)
  query       values of secret-named parameters in URLs and free text:
              `?token=…`, `access_token=…`, `api_key=…`, `sig=…`, `password: …`, `pwd="…"`
  card        13-19 digits (spaces or dashes between) starting 2-6 that pass the Luhn check
              and do not end in six zeros (amounts); an order number passes one time in ten,
              and is then masked too
  email       an e-mail address, as PII

Every pattern runs in time linear in the string: matches start only at word
boundaries (look-behind), runs of a character class are possessive, and the rest is
plain Python over the matches. Rule files add patterns in RE2 syntax (google-re2:
linear time by construction, no back-references or look-around).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

SECRET = "secret"
PII = "pii"
#: the built-in value patterns, by the names `redaction: {show_patterns: [...]}` uses
BUILTIN_PATTERNS = ("pem", "jwt", "bearer", "url", "query", "card", "email")
#: pattern names whose matches are PII (shown with `show_pii: true`)
PII_PATTERNS = frozenset({"email"})

_MIN_KEY_CHARS = 16


def _initial_key() -> bytes:
    configured = os.environ.get("SHADOW_REDACTION_KEY", "")
    if len(configured) >= _MIN_KEY_CHARS:
        return configured.encode("utf-8", "surrogatepass")
    return secrets.token_bytes(32)


_key: bytes = _initial_key()


def set_key(key: str | bytes) -> None:
    """Use `key` for the mask hashes (tests; a caller that reads it from a file).
    Too short a key is refused: the hashes are only as safe as the key."""
    global _key
    raw = key.encode("utf-8", "surrogatepass") if isinstance(key, str) else key
    if len(raw) < _MIN_KEY_CHARS:
        raise ValueError(f"a redaction key has at least {_MIN_KEY_CHARS} characters")
    _key = raw


def _digest(data: bytes) -> str:
    return hmac.new(_key, data, hashlib.sha256).hexdigest()[:8]


def mask(value: Any, kind: str = SECRET) -> Any:
    """The mask of one value. None and booleans are shown as they are (one bit; whether
    a secret is set is what an operator needs to see)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return f"[{kind} len={len(value)} h={_digest(b's' + value.encode('utf-8', 'surrogatepass'))}]"
    if isinstance(value, int | float):
        return f"[{kind} number h={_digest(b'n' + repr(value).encode())}]"
    try:
        data = orjson.dumps(value, default=str, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, RecursionError):  # nested past orjson's limit: masked without a hash
        return f"[{kind} too deep to hash]"
    if isinstance(value, dict):
        return f"[{kind} object n={len(value)} h={_digest(b'o' + data)}]"
    if isinstance(value, list | tuple):
        return f"[{kind} list n={len(value)} h={_digest(b'l' + data)}]"
    return f"[{kind} len={len(str(value))} h={_digest(b'x' + str(value).encode('utf-8', 'surrogatepass'))}]"


_MASKED = re.compile(r"\[(?:secret|pii) (?:len=\d+ |number |list n=\d+ |object n=\d+ )h=[0-9a-f]{8}\]")


def is_mask(text: Any) -> bool:
    """True when `text` is exactly one mask (tests, and callers that must not mask twice)."""
    return isinstance(text, str) and _MASKED.fullmatch(text) is not None


# ----------------------------------------------------------------------------- patterns

#: a span of a string to mask: (start, end, kind)
Span = tuple[int, int, str]
#: does this parameter / assignment name a secret? (the entity's names: redaction.py)
NameTest = Callable[[str], str | None]

_TOKEN_CHARS = "A-Za-z0-9_-"
_JWT = re.compile(rf"(?<![{_TOKEN_CHARS}])eyJ[{_TOKEN_CHARS}]++(?:\.[{_TOKEN_CHARS}]*+){{1,4}}")
_AUTH = re.compile(r"(?<![A-Za-z0-9])(?i:(bearer|basic))(?:[ \t]++|%20|\+)([A-Za-z0-9._~+/=-]++)")
# not the digits of a decimal number: a fraction (`29390.660000000000000001`, a
# numeric(38,18) value) or an integer part followed by one
_CARD = re.compile(r"(?<![0-9.])[2-6](?:[ -]?[0-9]){12,18}(?![0-9]|\.[0-9])")
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}+@[A-Za-z0-9-]{1,63}+(?:\.[A-Za-z0-9-]{1,63}+)++")
#: `name=value` (the value up to a space or a delimiter), `name: value` (a label: the value
#: may hold spaces, `phone: +49 151 2345`, up to the line's end, a delimiter or 64
#: characters), `"name": "value"` (quoted: up to the closing quote)
_ASSIGNMENT = re.compile(
    r"(?<![A-Za-z0-9_.-])([A-Za-z][A-Za-z0-9_.-]{0,63}+)[\"']?[ \t]*+"
    r"(?:=[ \t]*+(\"[^\"\n]*+\"|'[^'\n]*+'|[^\s&;,\"'<>#]++)"
    r"|:[ \t]*+(\"[^\"\n]*+\"|'[^'\n]*+'|[^\n&;,\"'<>#]{1,64}+))")


def _auth_hint(text: str) -> bool:
    """The auth schemes as they are written in practice (substring checks are much
    faster than a case-insensitive regex scan)."""
    return "earer" in text or "asic" in text or "EARER" in text or "ASIC" in text


def _hint(text: str) -> bool:
    """Something every pattern but the card number needs: most values (ids, enums,
    words) have none of it."""
    return ":" in text or "=" in text or "@" in text or "eyJ" in text or "-----BEGIN " in text or _auth_hint(text)


#: one `name=value` of a query or fragment: it starts right after `?`, `#`, `&` or `;`
_PARAM = re.compile(r"(?<=[?#&;])([^&;=#]++)=([^&;#]*+)")
_URL_REST = re.compile(r"[^\s\"'<>`]*+")
_SCHEME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+.-")
_PEM_BEGIN = "-----BEGIN "
_DASHES = "-----"
#: query parameters that carry credentials whatever the entity's names say
_AUTH_SCHEMES = frozenset({"bearer", "basic", "digest", "token", "negotiate"})
_QUERY_NAMES = frozenset({"sig", "code", "auth", "x-amz-credential", "x-goog-credential", "x-goog-signature"})


def luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        number = ord(char) - 48
        if index % 2:
            number = number * 2 - 9 if number > 4 else number * 2
        total += number
    return total % 10 == 0


def is_card_number(value: int | str) -> bool:
    """13-19 digits, starting 2-6 (the banking/finance ISO 7812 issuers), Luhn-valid, and
    not ending in six zeros (an amount in wei or minor units: `2500000000007000000`)."""
    digits = str(value) if isinstance(value, int) else value.replace(" ", "").replace("-", "")
    return (13 <= len(digits) <= 19 and digits.isdigit() and digits[0] in "23456" and not digits.endswith("000000")
            and luhn(digits))


def _looks_like_token(token: str) -> bool:
    return len(token) >= 20 or (len(token) >= 8 and any(not char.isalpha() for char in token))


def _basic_credentials(token: str) -> bool:
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in decoded


def _pem(text: str, spans: list[Span]) -> None:
    start = text.find(_PEM_BEGIN)
    while start >= 0:
        header_end = text.find(_DASHES, start + len(_PEM_BEGIN), start + len(_PEM_BEGIN) + 64)
        if header_end < 0:
            start = text.find(_PEM_BEGIN, start + len(_PEM_BEGIN))
            continue
        body = header_end + len(_DASHES)
        label = text[start + len(_PEM_BEGIN):header_end]
        end = text.find(f"-----END {label}-----", body)
        stop = end if end >= 0 else len(text)
        if stop > body:
            spans.append((body, stop, SECRET))
        start = text.find(_PEM_BEGIN, stop)


def _jwt(text: str, spans: list[Span]) -> None:
    spans.extend((match.start(), match.end(), SECRET) for match in _JWT.finditer(text))


def _bearer(text: str, spans: list[Span]) -> None:
    for match in _AUTH.finditer(text):
        scheme, token = match.group(1).lower(), match.group(2)
        if _looks_like_token(token) if scheme == "bearer" else (_basic_credentials(token) or _looks_like_token(token)):
            spans.append((match.start(2), match.end(2), SECRET))


def _params(text: str, start: int, end: int, secret_name: NameTest, spans: list[Span]) -> None:
    """`a=1&token=x;b=2` between start and end: mask the values of secret-named parameters."""
    for match in _PARAM.finditer(text, start, end):
        name = match.group(1)
        kind = SECRET if name.lower() in _QUERY_NAMES else secret_name(name)
        if kind is not None and match.end(2) > match.start(2):
            spans.append((match.start(2), match.end(2), kind))


def _urls(text: str, secret_name: NameTest, spans: list[Span]) -> None:
    marker = text.find("://")
    while marker >= 0:
        scheme_start = marker
        while scheme_start > 0 and marker - scheme_start < 32 and text[scheme_start - 1] in _SCHEME_CHARS:
            scheme_start -= 1
        rest = _URL_REST.match(text, marker + 3)
        end = rest.end() if rest is not None else marker + 3
        if scheme_start < marker and text[scheme_start].isalpha():
            authority_start = marker + 3
            authority_end = end
            for delimiter in "/?#":
                found = text.find(delimiter, authority_start, end)
                if 0 <= found < authority_end:
                    authority_end = found
            at = text.rfind("@", authority_start, authority_end)
            if at > authority_start:
                colon = text.find(":", authority_start, at)
                spans.append((colon + 1 if colon >= 0 else authority_start, at, SECRET))
            query = text.find("?", authority_end, end)
            fragment = text.find("#", authority_end, end)
            if query >= 0 and (fragment < 0 or query < fragment):
                _params(text, query + 1, fragment if fragment > query else end, secret_name, spans)
            if fragment >= 0:  # OAuth's implicit flow: #access_token=...
                _params(text, fragment + 1, end, secret_name, spans)
        marker = text.find("://", max(end, marker + 3))


def _assignments(text: str, secret_name: NameTest, spans: list[Span]) -> None:
    for match in _ASSIGNMENT.finditer(text):
        name, equals = match.group(1), match.group(2) is not None
        kind = SECRET if equals and name.lower() in _QUERY_NAMES else secret_name(name)
        if kind is None:
            continue
        group = 2 if equals else 3
        value = match.group(group)
        value_start, value_end = match.span(group)
        if value.split(" ", 1)[0].lower() in _AUTH_SCHEMES:  # `Authorization: Bearer …`: the bearer pattern's
            continue
        if value[0] in "\"'":
            value_start, value_end = value_start + 1, value_end - 1
        else:
            value_end -= len(value) - len(value.rstrip())
        if value_end > value_start:
            spans.append((value_start, value_end, kind))


def _cards(text: str, spans: list[Span]) -> None:
    for match in _CARD.finditer(text):
        if is_card_number(match.group(0)):
            spans.append((match.start(), match.end(), SECRET))


def _emails(text: str, spans: list[Span]) -> None:
    spans.extend((match.start(), match.end(), PII) for match in _EMAIL.finditer(text))


@dataclass(frozen=True)
class ValuePatterns:
    """Which value patterns run: the built-ins not turned off, and the rules' own
    (compiled RE2 patterns: the whole match is masked, or group 1 when there is one)."""

    builtin: frozenset[str] = frozenset(BUILTIN_PATTERNS)
    extra: tuple[Any, ...] = ()

    def spans(self, text: str, secret_name: NameTest) -> list[Span]:
        spans: list[Span] = []
        on = self.builtin
        if not self.extra and not _hint(text):
            if "card" in on and len(text) >= 13:
                _cards(text, spans)
            return spans
        if "pem" in on and _PEM_BEGIN in text:
            _pem(text, spans)
        if "jwt" in on and "eyJ" in text:
            _jwt(text, spans)
        if "bearer" in on and _auth_hint(text):
            _bearer(text, spans)
        if "url" in on and "://" in text:
            _urls(text, secret_name, spans)
        if "query" in on and ("=" in text or ":" in text):
            _assignments(text, secret_name, spans)
        if "card" in on and len(text) >= 13:
            _cards(text, spans)
        if "email" in on and "@" in text:
            _emails(text, spans)
        for pattern in self.extra:
            for match in pattern.finditer(text):
                group = 1 if pattern.groups else 0
                if match.end(group) > match.start(group):
                    spans.append((match.start(group), match.end(group), SECRET))
        return spans


def _merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def apply(text: str, spans: Iterable[Span]) -> str:
    """`text` with each span masked: overlapping secrets merge; a PII span that
    overlaps a secret is dropped (`u:p4ss@host`: the password, not an e-mail to the host)."""
    spans = list(spans)
    if not spans:
        return text
    secret = _merge((start, end) for start, end, kind in spans if kind == SECRET)
    pii = [(start, end) for start, end in _merge((start, end) for start, end, kind in spans if kind != SECRET)
           if not any(start < high and low < end for low, high in secret)]
    pieces: list[str] = []
    position = 0
    spans = [(low, high, SECRET) for low, high in secret] + [(low, high, PII) for low, high in pii]
    for start, end, kind in sorted(spans):
        pieces.append(text[position:start])
        pieces.append(str(mask(text[start:end], kind)))
        position = end
    pieces.append(text[position:])
    return "".join(pieces)
