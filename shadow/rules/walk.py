"""Walking a rule's field tree: which fields read another table, and with which fields
each of that table's rows is read. Pure spec helpers shared by the rebuild, the
PostgreSQL fetch plan, `shadow rules check --pg` and `shadow rules test`."""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from shadow.rules.spec import AGGREGATES, Field


def table_fields(fields: Iterable[Field]) -> Iterator[Field]:
    """The rows/child/aggregate fields directly under these fields (inside objects too)."""
    for spec in fields:
        if spec.kind in ("rows", "child", *AGGREGATES):
            yield spec
        elif spec.kind == "object":
            yield from table_fields(spec.fields)


def item_fields(spec: Field) -> tuple[Field, ...]:
    """The fields each row of a rows/child field is read with."""
    return (spec.value,) if spec.value is not None else spec.fields
