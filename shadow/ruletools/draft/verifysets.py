"""`verify:` candidates from the catalog: a unique index over columns the draft maps is
a set `shadow verify` can digest on both sides (`sets: [{name, of, where}]`). Written as
comments — the draft never turns a check on by itself. Pure."""
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from shadow.ruletools.draft.catalog import Index, Table
from shadow.ruletools.draft.proposal import FieldProposal

_EQUALS = re.compile(r"^(\w+)\s*=\s*'((?:[^']|'')*)'(?:::[\w .\"]+)?$")
_NOT_NULL = re.compile(r"^(\w+) IS NOT NULL$")


def _paths(fields: Sequence[FieldProposal], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(column, API path) of every plain column field of the main row."""
    for spec in fields:
        path = f"{prefix}.{spec.name}" if prefix else spec.name
        if spec.kind == "column" and spec.column:
            yield spec.column, path
        elif spec.kind == "object":
            yield from _paths(spec.fields, path)


def _where(index: Index, by_column: dict[str, str]) -> str | None:
    """The partial index's predicate as `where:` (equalities on mapped columns), or None."""
    conditions = []
    for part in re.split(r"\s+AND\s+", index.predicate or ""):
        text = part.strip().strip("()").strip()
        equal = _EQUALS.match(text)
        not_null = _NOT_NULL.match(text)
        if equal is not None and equal.group(1) in by_column:
            conditions.append(f"{by_column[equal.group(1)]}: {equal.group(2)}")
        elif not_null is None or not_null.group(1) not in index.columns:
            return None
    return ", ".join(conditions)


def set_candidates(table: Table, key: str, fields: Sequence[FieldProposal]) -> list[str]:
    by_column = dict(_paths(fields))
    found = []
    for index in table.indexes:
        if not index.unique or not index.columns or index.columns in (table.primary_key, (key,)):
            continue
        if not all(column in by_column for column in index.columns):
            continue
        of = ", ".join(by_column[column] for column in index.columns)
        where = _where(index, by_column) if index.partial else ""
        if where is None:
            found.append(f"- {{name: {index.name}, of: [{of}]}}  # partial index: add `where:` for its predicate")
        else:
            found.append(f"- {{name: {index.name}, of: [{of}]" + (f", where: {{{where}}}" if where else "") + "}")
    return found
