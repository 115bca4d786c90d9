"""What a view-model read adds to a ShadowJob (issue 12), taken from the captured read in
the shadow worker (never on the request path):

- the reader: a JWT claim read from a header — decoded, *not verified*: only 2xx answers
  are shadowed, so the upstream has accepted the token. The value is used only to
  rebuild fields bound to the reader; it is never logged or published;
- the listing of a list answer: its keys in order (duplicates kept), the total count
  the body claims, the query parameters (filters, page) the API was asked with.
"""
from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from shadow.rules.spec import Lookup, ReaderSpec, Route

MAX_TOKEN_CHARS = 8192  # a longer Authorization header is not read (no reader)
MAX_CLAIM_CHARS = 200


@dataclass(frozen=True, slots=True)
class BoundReader:
    """Who read: a claim value and how it becomes a PostgreSQL id. repr hides the value."""

    value: str
    lookup: Lookup

    def __repr__(self) -> str:
        return f"BoundReader(<hidden>, {self.lookup!r})"


@dataclass(frozen=True, slots=True)
class Listing:
    """A list answer as the API gave it: keys in order (duplicates kept), the total
    count it claims (None when the route has no `total:` or the body lacks it), and the
    query parameters of the read."""

    keys: tuple[str, ...]
    total: Any
    query: Mapping[str, Any]


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None and isinstance(headers, dict):  # plain dicts are case-sensitive
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    return value


def jwt_claim(token: str | None, claim: str) -> str | None:
    """The claim of a JWT (`Bearer a.b.c` or `a.b.c`) as a string; None for anything
    that is not a readable token carrying a short scalar claim. Never raises."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        return None
    token = token.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    parts = token.split(".")
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


def bound_reader(spec: ReaderSpec | None, headers: Mapping[str, str]) -> BoundReader | None:
    if spec is None:
        return None
    claim = jwt_claim(header_value(headers, spec.header), spec.claim)
    return None if claim is None else BoundReader(claim, spec.lookup)


def listing(route: Route, body: Any, query: Mapping[str, Any]) -> Listing | None:
    """The Listing of a list route's answer (None for other routes or no list)."""
    if not route.is_list or route.entity_spec is None:
        return None
    document = route.document(body)
    if not isinstance(document, list):
        return None
    id_field = route.entity_spec.id_field
    keys = tuple(route.entity_spec.validate_key(item.get(id_field)) for item in document if isinstance(item, dict))
    total = None
    if route.page is not None and route.page.total:
        total = body
        for step in route.page.total:
            total = total.get(step) if isinstance(total, dict) else None
    return Listing(keys, total, {name: query.getall(name) if hasattr(query, "getall") else [query[name]]
                                 for name in query})


def list_path(route: Route) -> str:
    """Where a list's members sit, as diffs name it: `data[*]`."""
    return ".".join(route.at) + "[*]" if route.at else "[*]"
