"""The reason a list-level outcome shows (on /mismatches, in the mismatch log): which
read it was and what selected PostgreSQL's rows, with the values of secret-named query
parameters and columns hidden by the entity's redaction (the same names as fields)."""
from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from shadow.model import ListContext

MAX_QUERY_CHARS = 300  # the query string a list finding shows
HIDDEN = "<redacted>"


def render(context: ListContext, hides: Callable[[str], bool]) -> str:
    """`list read ?a=1&token=<redacted>; selected by col eq v, …; note`."""
    text = urlencode([(name, HIDDEN if hides(name) else value) for name, value in context.query])
    if len(text) > MAX_QUERY_CHARS:
        text = text[:MAX_QUERY_CHARS - 3] + "..."
    shown = [f"{column} {op} {HIDDEN if hides(column) else value}" if op else f"{column}: {value}"
             for column, op, value in context.selected_by]
    parts = [f"list read ?{text}", *(["selected by " + ", ".join(shown)] if shown else []),
             *([context.note] if context.note else [])]
    return "; ".join(parts)
