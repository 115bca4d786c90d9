"""What a view-model read adds to a ShadowJob (issue 12), taken from the captured read in
the shadow worker (never on the request path):

- the reader: a JWT claim read from a header — decoded, *not verified*: only 2xx answers
  are shadowed, so the upstream has accepted the token. The value is used only to
  rebuild fields bound to the reader; it is never logged or published;
- the listing of a list answer: its keys in order (duplicates kept), the total count
  the body claims, the query parameters (filters, page) the API was asked with.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shadow.rules.claims import MAX_CLAIM_CHARS, MAX_TOKEN_CHARS, header_value, jwt_claim
from shadow.rules.spec import Lookup, ReaderSpec, Route

__all__ = ["MAX_CLAIM_CHARS", "MAX_TOKEN_CHARS", "BoundReader", "Listing", "bound_reader", "header_value",
           "jwt_claim", "list_path", "listing"]


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
    pages: Any = None  # the page count the body claims (route `pages:`), or None
    echoed: Mapping[str, Any] = field(default_factory=dict)  # body path -> page / limit the body says it applied


def bound_reader(spec: ReaderSpec | None, headers: Mapping[str, str]) -> BoundReader | None:
    if spec is None:
        return None
    claim = jwt_claim(header_value(headers, spec.header), spec.claim, spec.schemes)
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
    page = route.page
    return Listing(keys, _at(body, page.total) if page else None,
                   {name: _values(query, name) for name in query},
                   _at(body, page.pages) if page else None,
                   {".".join(path): _at(body, path) for path in page.echoes()} if page else {})


def _values(query: Mapping[str, Any], name: str) -> list[Any]:
    """Every value of a query parameter (a multidict, or a mapping to one value or a list)."""
    if hasattr(query, "getall"):
        return list(query.getall(name))
    value = query[name]
    return list(value) if isinstance(value, list | tuple) else [value]


def _at(body: Any, path: tuple[str, ...]) -> Any:
    if not path:
        return None
    for step in path:
        body = body.get(step) if isinstance(body, dict) else None
    return body


def list_path(route: Route) -> str:
    """Where a list's members sit, as diffs name it: `data[*]`."""
    return ".".join(route.at) + "[*]" if route.at else "[*]"
