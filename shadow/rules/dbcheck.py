"""`shadow rules check DIR --pg DSN`: every table and column the rules read exists in
PostgreSQL — a typo in a column name is caught before deploy, with the field's
file:line, instead of as `error` outcomes in production. Reads information_schema only."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import asyncpg

from shadow.rules.issues import RuleIssue
from shadow.rules.load import RuleSet
from shadow.rules.spec import AGGREGATES, Entity, Route
from shadow.rules.walk import item_fields


def _split(table: str) -> tuple[str | None, str]:
    schema, _, name = table.rpartition(".")
    return (schema or None), name


def _reads(fields: Any, table: str) -> Iterator[tuple[str, str, int]]:
    """(table, column, line) for every column these fields read, child tables included."""
    for spec in fields:
        if spec.kind == "object":
            yield from _reads(spec.fields, table)
            continue
        for column in spec.columns():
            yield table, column, spec.line
        if spec.kind in AGGREGATES:
            for condition in spec.where:
                yield spec.table or "", condition.column, spec.line
            if spec.of:
                yield spec.table or "", spec.of, spec.line
        if spec.kind in ("rows", "child"):
            child = spec.table or ""
            yield child, spec.fk or "", spec.line
            for column in spec.order_by:
                yield child, column, spec.line
            yield from _reads(item_fields(spec), child)


def _route_reads(entity: Entity, route: Route) -> Iterator[tuple[str, str, int]]:
    """What a list route's selection reads: filtered columns (through child / junction
    tables), lookups by a unique column, reader-derived sets, order and sort columns."""
    for condition in route.where:
        through = condition.through
        if through is not None:
            yield through.table, through.fk, route.line
            yield through.table, condition.column, route.line
            yield entity.table, through.parent, route.line
        else:
            yield entity.table, condition.column, route.line
        if condition.to is not None and condition.by is not None:
            yield condition.to, condition.by, route.line
            yield condition.to, "id", route.line
        if condition.reader_set is not None:
            found = condition.reader_set
            yield found.table, found.select, route.line
            yield found.table, found.by, route.line
    if route.page is not None:
        for column, _ in route.page.order_by:
            yield entity.table, column, route.line
        if route.page.sort is not None:
            for column in route.page.sort.allow.values():
                yield entity.table, column, route.line


def _uses_id_map(fields: Any) -> bool:
    return any(spec.kind in ("ref", "mixed") or _uses_id_map(spec.fields)
               or (spec.value is not None and _uses_id_map([spec.value])) for spec in fields)


def _entity_reads(entity: Entity, routes: tuple[Route, ...] = ()) -> Iterator[tuple[str, str, int]]:
    if entity.distinct:  # a scalar list reads one column, nothing else of its table
        yield entity.table, entity.distinct, entity.line
        return
    yield entity.table, entity.key, entity.line
    yield entity.table, entity.id, entity.line
    yield from _reads(entity.fields.values(), entity.table)
    for route in routes:
        if route.entity == entity.name:
            yield from _route_reads(entity, route)
    if _uses_id_map(entity.fields.values()):
        for column in ("collection", "legacy_object_id", "new_id"):
            yield "id_map", column, entity.line


async def check_against_database(rules: RuleSet, dsn: str) -> list[RuleIssue]:
    """Problems found: missing tables and columns, each at the rule line that reads them."""
    connection = await asyncpg.connect(dsn, server_settings={"default_transaction_read_only": "on"})
    try:
        rows = await connection.fetch(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')")
        search_path = [part.strip().strip('"') for part in (await connection.fetchval("SHOW search_path")).split(",")]
    finally:
        await connection.close()
    columns: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        columns.setdefault((row["table_schema"], row["table_name"]), set()).add(row["column_name"])
    schemas = [schema if schema != "$user" else "postgres" for schema in search_path] + ["public"]

    def lookup(table: str) -> set[str] | None:
        schema, name = _split(table)
        for candidate in ([schema] if schema else schemas):
            if (candidate, name) in columns:
                return columns[(candidate, name)]
        return None

    issues: list[RuleIssue] = []
    seen: set[tuple[str, str, str]] = set()
    for entity in rules.entities.values():
        for table, column, line in _entity_reads(entity, rules.routes):
            if (entity.name, table, column) in seen:
                continue
            seen.add((entity.name, table, column))
            found = lookup(table)
            if found is None:
                issues.append(RuleIssue(entity.file, line, f"entity {entity.name!r}: table {table!r} does not exist"))
                seen.update((entity.name, table, other) for _, other, _ in _entity_reads(entity))
            elif column not in found:
                issues.append(RuleIssue(entity.file, line, f"entity {entity.name!r}: column {column!r} "
                                                           f"does not exist in table {table!r}"))
    return sorted(issues, key=lambda issue: (issue.file, issue.line))

