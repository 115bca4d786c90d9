"""Layer 2: exact decimal sums grouped by columns, and unique-set digests.

Each sum is computed four ways: natively in each store (Mongo `$sum` over Decimal128,
PostgreSQL `SUM` over numeric) and from the streamed values of each store summed here in
`Decimal` with 100 digits and the Inexact trap set — no float anywhere. The stores must
agree (streamed Mongo vs PostgreSQL, both exact), and each store's native sum must agree
with its own stream (Decimal128 holds 34 digits; a double in Mongo shows up here).
Sets are compared member by member in sorted order (bounded memory) and digested
order-independently."""
from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from decimal import Context, Decimal, Inexact
from typing import Any

import asyncpg
from bson import Decimal128

from shadow.replay.sources.postgres import quote
from shadow.rules.sections import Column, SetCheck, SumCheck
from shadow.rules.spec import Entity
from shadow.verify.model import Difference, LayerResult, layer_result
from shadow.verify.mongoside import MongoSide
from shadow.verify.scope import KeyRange, mongo_filter, pg_condition

EXACT = Context(prec=100, traps=[Inexact])
Group = tuple[str | None, ...]


def exact(value: Any) -> Decimal | None:
    """A stored number as an exact Decimal (None for null/absent; a double by its
    shortest repr, which is what JS shows)."""
    if value is None:
        return None
    if isinstance(value, Decimal128):
        return value.to_decimal()
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        return Decimal(value)
    raise TypeError(f"not a number: {type(value).__name__}")


def _group_value(value: Any) -> str | None:
    return None if value is None else str(value)


def _dig(document: Any, path: str) -> Any:
    for step in path.split("."):
        document = document.get(step) if isinstance(document, dict) else None
    return document


def stored_path(entity: Entity, api_path: str) -> str:
    first, dot, rest = api_path.partition(".")
    return entity.stored.stored_name(first) + dot + rest


def _group(check: SumCheck, group: Group) -> dict[str, str | None]:
    """A sum's group as an object: API path -> value (None stays null)."""
    return {column.path: value for column, value in zip(check.by, group, strict=True)}


async def run_sums(entity: Entity, mongo: MongoSide, pool: asyncpg.Pool, key_range: KeyRange) -> LayerResult:
    started = time.perf_counter()
    differences: list[Difference] = []
    checks: list[dict[str, Any]] = []
    digests: dict[str, Any] = {}
    if entity.checks is None:
        return layer_result("sums", [], 0, 0.0)
    for check in entity.checks.sums:
        totals = await _sum_four_ways(entity, check, mongo, pool, key_range)
        groups = set().union(*(set(found) for found in totals.values()))
        name = f"sums.{check.name}"
        before = len(differences)
        for group in sorted(groups, key=lambda g: tuple(("", "") if v is None else ("v", v) for v in g)):
            label = _group(check, group)
            in_mongo, in_pg = totals["mongo_streamed"].get(group), totals["pg_native"].get(group)
            if in_mongo != in_pg:
                differences.append(Difference("sums", name, "sum", path=check.value.path, group=label,
                                              mongo=_show(in_mongo), postgres=_show(in_pg)))
            for native, streamed in (("mongo_native", "mongo_streamed"), ("pg_native", "pg_streamed")):
                if native not in totals:
                    continue  # a dump: no server to sum natively
                if totals[native].get(group) != totals[streamed].get(group):
                    differences.append(Difference("sums", name, "cross_check", key=f"{native} vs {streamed}",
                                                  path=check.value.path, group=label,
                                                  mongo=_show(totals[native].get(group)),
                                                  postgres=_show(totals[streamed].get(group))))
        checks.append({"check": name, "passed": len(differences) == before, "groups": len(groups)})
    for unique in entity.checks.sets:
        found, digest = await _compare_set(entity, unique, mongo, pool, key_range)
        differences.extend(found)
        digests[unique.name] = digest
        checks.append({"check": f"sets.{unique.name}", "passed": not found,
                       "mongo": digest["mongo"]["count"], "postgres": digest["postgres"]["count"]})
    return layer_result("sums", differences, len(checks), time.perf_counter() - started, set_digests=digests,
                        checks=checks)


def _show(total: tuple[Decimal, int] | None) -> Any:
    if total is None:
        return None
    return {"sum": format(total[0], "f"), "rows": total[1]}


async def _sum_four_ways(entity: Entity, check: SumCheck, mongo: MongoSide, pool: asyncpg.Pool,
                         key_range: KeyRange) -> dict[str, dict[Group, tuple[Decimal, int]]]:
    query = mongo_filter(entity, key_range)
    value_path = stored_path(entity, check.value.path)
    by_paths = [stored_path(entity, column.path) for column in check.by]
    found: dict[str, dict[Group, tuple[Decimal, int]]] = {}
    # Mongo, natively (a live server only)
    native = await mongo.native_sums(entity.collection, query, value_path, by_paths)
    if native is not None:
        found["mongo_native"] = {tuple(_group_value(v) for v in group): (EXACT.plus(exact(total) or Decimal(0)), rows)
                                 for group, total, rows in native}
    # Mongo, streamed
    sums: dict[Group, Decimal] = defaultdict(Decimal)
    rows: dict[Group, int] = defaultdict(int)
    projection = {path: 1 for path in (value_path, *by_paths)}
    async for document in mongo.documents(entity.collection, query, projection):
        group = tuple(_group_value(_dig(document, path)) for path in by_paths)
        value = exact(_dig(document, value_path))
        sums[group] = EXACT.add(sums[group], value or Decimal(0))
        rows[group] += 1
    found["mongo_streamed"] = {group: (sums[group], rows[group]) for group in rows}
    # PostgreSQL, natively and streamed
    where, args = pg_condition(entity, key_range)
    columns = [quote(column.column) for column in check.by]
    value_column = quote(check.value.column)
    select_groups = "".join(f"{column}::text, " for column in columns)
    group_by = f" GROUP BY {', '.join(columns)}" if columns else ""
    pg_native: dict[Group, tuple[Decimal, int]] = {}
    pg_sums: dict[Group, Decimal] = defaultdict(Decimal)
    pg_rows: dict[Group, int] = defaultdict(int)
    async with pool.acquire() as connection:
        for row in await connection.fetch(
                f"SELECT {select_groups}COALESCE(SUM({value_column}), 0), count(*) FROM {quote(entity.table)} "
                f"WHERE {where}{group_by}", *args):
            group = tuple(row[index] for index in range(len(columns)))
            pg_native[group] = (EXACT.plus(row[len(columns)]), int(row[len(columns) + 1]))
        async with connection.transaction(readonly=True):
            streamed = f"SELECT {select_groups}{value_column} FROM {quote(entity.table)} WHERE {where}"
            async for row in connection.cursor(streamed,
                                               *args, prefetch=2000):
                group = tuple(row[index] for index in range(len(columns)))
                pg_sums[group] = EXACT.add(pg_sums[group], row[len(columns)] or Decimal(0))
                pg_rows[group] += 1
    found["pg_native"] = pg_native
    found["pg_streamed"] = {group: (pg_sums[group], pg_rows[group]) for group in pg_rows}
    return found


class SetDigest:
    """Order-independent digest of a multiset of tuples: count and the sum of each
    member's SHA-256 mod 2^256 (two slices' digests add up to the whole set's)."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    def add(self, member: tuple[str, ...]) -> None:
        self.count += 1
        member_hash = int.from_bytes(hashlib.sha256("\x1f".join(member).encode()).digest(), "big")
        self.total = (self.total + member_hash) % (1 << 256)

    def as_json(self) -> dict[str, Any]:
        return {"count": self.count, "digest": f"{self.total:064x}"}


def _member_sql(column: Column, args: list[Any], id_map: str) -> str:
    """A set member's column as text: a reference as the legacy id `id_map` gives its FK
    (in `to`), or `!<uuid>` when it names nothing."""
    if column.to is None:
        return f"{quote(column.column)}::text"
    args.append(column.to)
    fk = quote(column.column)
    return (f"COALESCE((SELECT i.legacy_object_id FROM {id_map} i WHERE i.new_id = {fk} "
            f"AND i.collection = ${len(args)}), '!' || {fk}::text)")


async def _compare_set(entity: Entity, unique: SetCheck, mongo: MongoSide, pool: asyncpg.Pool,
                       key_range: KeyRange, id_map: str = "id_map") -> tuple[list[Difference], dict[str, Any]]:
    """Both sides' members in sorted order, merged; duplicates on either side count
    (PostgreSQL's unique index cannot hold what Mongo's missing index let in). A member
    is the tuple of `of` values as text: a reference is its legacy id on both sides."""
    name = f"sets.{unique.name}"
    paths = [stored_path(entity, column.path) for column in unique.of]
    conditions = [{stored_path(entity, column.path): wanted} for column, wanted in unique.where]
    present = [{path: {"$ne": None}} for path in paths]
    query = {"$and": [mongo_filter(entity, key_range), *conditions, *present]}
    where, args = pg_condition(entity, key_range)
    for column, wanted in unique.where:
        args.append(wanted)
        where += f" AND {quote(column.column)} = ${len(args)}"
    where += "".join(f" AND {quote(column.column)} IS NOT NULL" for column in unique.of)
    members = [_member_sql(column, args, quote(id_map)) for column in unique.of]
    in_byte_order = ", ".join(f'{member} COLLATE "C"' for member in members)
    sql = f"SELECT {', '.join(members)} FROM {quote(entity.table)} WHERE {where} ORDER BY {in_byte_order}"
    mongo_digest, pg_digest = SetDigest(), SetDigest()
    differences: list[Difference] = []

    def shown(member: tuple[str, ...]) -> dict[str, str]:
        return {column.path: value for column, value in zip(unique.of, member, strict=True)}

    async with pool.acquire() as connection, connection.transaction(readonly=True):
        pg_rows = connection.cursor(sql, *args, prefetch=2000).__aiter__()
        mongo_docs = mongo.sorted_by(entity.collection, query, paths).__aiter__()
        last_mongo: tuple[str, ...] | None = None

        async def next_mongo() -> tuple[str, ...] | None:
            nonlocal last_mongo
            try:
                document = await mongo_docs.__anext__()
            except StopAsyncIteration:
                return None
            member = tuple(str(_dig(document, path)) for path in paths)
            if last_mongo is not None and member < last_mongo:
                raise RuntimeError(f"set {unique.name}: Mongo sorted {member!r} after {last_mongo!r} "
                                   "(values of different BSON types in one field): cannot merge")
            last_mongo = member
            return member

        async def next_pg() -> tuple[str, ...] | None:
            try:
                row = await pg_rows.__anext__()
            except StopAsyncIteration:
                return None
            return tuple(row)

        in_mongo, in_pg = await next_mongo(), await next_pg()
        while in_mongo is not None or in_pg is not None:
            if in_pg is None or (in_mongo is not None and in_mongo < in_pg):
                assert in_mongo is not None
                mongo_digest.add(in_mongo)
                differences.append(Difference("sums", name, "missing_in_postgres", group=shown(in_mongo),
                                              mongo=list(in_mongo)))
                in_mongo = await next_mongo()
            elif in_mongo is None or in_pg < in_mongo:
                pg_digest.add(in_pg)
                differences.append(Difference("sums", name, "extra_in_postgres", group=shown(in_pg),
                                              postgres=list(in_pg)))
                in_pg = await next_pg()
            else:
                mongo_digest.add(in_mongo)
                pg_digest.add(in_pg)
                in_mongo, in_pg = await next_mongo(), await next_pg()
    return differences, {"mongo": mongo_digest.as_json(), "postgres": pg_digest.as_json()}
