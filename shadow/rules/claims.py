"""Reading one claim of a JWT from a request header (a view model's reader, a route
key taken from the token). The payload is decoded, *not verified*: only 2xx answers
are shadowed, so the upstream accepted the token. Never raises: outside input."""
from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

import orjson

MAX_TOKEN_CHARS = 8192  # a longer Authorization header is not read (no reader)
MAX_CLAIM_CHARS = 200
#: the default schemes: `Bearer <jwt>`, `Token <jwt>` (Django REST, RealWorld) and a bare `<jwt>`
DEFAULT_SCHEMES = ("bearer", "token", "")


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None and isinstance(headers, dict):  # plain dicts are case-sensitive
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    return value


def bare_token(value: str, schemes: tuple[str, ...]) -> str | None:
    """The token of a header value `<scheme> <token>` or `<token>`, when its scheme word
    (case-insensitive) is one of `schemes` ("" = no scheme word); None otherwise."""
    value = value.strip()
    word, space, rest = value.partition(" ")
    if space:
        return rest.strip() if word.lower() in schemes else None
    return value if "" in schemes else None


def jwt_claim(token: str | None, claim: str, schemes: tuple[str, ...] = DEFAULT_SCHEMES) -> str | None:
    """The claim of a JWT (`Bearer a.b.c`, `Token a.b.c` or `a.b.c`, as `schemes`
    allow) as a string; None for anything that is not a readable token carrying a
    short scalar claim."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        return None
    bare = bare_token(token, schemes)
    if bare is None or any(char.isspace() for char in bare):
        return None
    parts = bare.split(".")
    if len(parts) != 3 or not parts[1]:
        return None
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        data = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    value = data.get(claim)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    if not text or len(text) > MAX_CLAIM_CHARS or "\x00" in text:
        return None
    return text
