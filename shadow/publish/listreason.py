"""The reason a list-level outcome shows (on /mismatches, in the mismatch log): which
read it was and what selected PostgreSQL's rows. Every value goes through the entity's
redaction as a field of that name would (a query parameter or column named like a
secret is masked; secret-looking values are masked wherever they are)."""
from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

from shadow.model import ListContext

if TYPE_CHECKING:
    from shadow.publish.redaction import Redaction

MAX_QUERY_CHARS = 300  # the query string a list finding shows


def render(context: ListContext, redaction: Redaction) -> str:
    """`list read ?a=1&token=<masked>; selected by col eq v, …; note`."""
    def shown(value: str, name: str) -> str:
        return str(redaction.value(value, name))

    text = urlencode([(redaction.shown_name(name), shown(value, name)) for name, value in context.query])
    if len(text) > MAX_QUERY_CHARS:
        text = text[:MAX_QUERY_CHARS - 3] + "..."
    selected = [f"{column} {op} {shown(value, column)}" if op else f"{column}: {value}"
                for column, op, value in context.selected_by]
    parts = [f"list read ?{text}", *(["selected by " + ", ".join(selected)] if selected else []),
             *([redaction.text(context.note)] if context.note else [])]
    return "; ".join(parts)
