"""Layer 1: counts, pushed down to each store — rows per entity (after the `keep`
filters), child rows per embedded array (array lengths summed vs child rows), documents
with each reference set vs non-null FKs, and dangling references on each side."""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import asyncpg
from bson import ObjectId

from shadow.replay.sources.postgres import quote
from shadow.rules.spec import Entity, Field
from shadow.verify.model import Difference, LayerResult, layer_result
from shadow.verify.scope import KeyRange, mongo_filter, pg_condition

_ID_LIKE = r"^([0-9a-fA-F]{24}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
_DANGLING_BATCH = 500


def relationship_fields(entity: Entity) -> Iterator[tuple[str, str, Field]]:
    """(API path, stored Mongo path, spec) of every rows/child/ref/mixed field of the main
    document (top level and inside objects; arrays inside arrays are compared by docs)."""
    pending = [(spec.name, entity.stored.stored_name(spec.name), spec) for spec in entity.fields.values()]
    while pending:
        path, stored, spec = pending.pop(0)
        if spec.kind == "object":
            pending.extend((f"{path}.{sub.name}", f"{stored}.{sub.name}", sub) for sub in spec.fields)
        elif spec.kind in ("rows", "child", "ref", "mixed"):
            yield path, stored, spec


async def run_counts(entity: Entity, mongo_db: Any, pool: asyncpg.Pool, key_range: KeyRange,
                     id_map_table: str = "id_map") -> LayerResult:
    started = time.perf_counter()
    collection = mongo_db[entity.collection]
    query = mongo_filter(entity, key_range)
    where, args = pg_condition(entity, key_range, "m")
    table = quote(entity.table)
    differences: list[Difference] = []
    checked = 0

    def check(name: str, in_mongo: int, in_pg: int, kind: str = "count") -> None:
        nonlocal checked
        checked += 1
        if in_mongo != in_pg:
            differences.append(Difference("counts", name, kind, mongo=in_mongo, postgres=in_pg))

    async with pool.acquire() as connection:
        async def scalar(sql: str, *values: Any) -> int:
            return int(await connection.fetchval(sql, *values) or 0)

        check("count", await collection.count_documents(query),
              await scalar(f"SELECT count(*) FROM {table} m WHERE {where}", *args))
        for path, stored, spec in relationship_fields(entity):
            if spec.kind == "rows":
                size = {"$cond": [{"$isArray": f"${stored}"}, {"$size": f"${stored}"}, 0]}
                found = [row async for row in await collection.aggregate(
                    [{"$match": query}, {"$group": {"_id": None, "n": {"$sum": size}}}])]
                in_pg = await scalar(f"SELECT count(*) FROM {quote(spec.table or '')} c JOIN {table} m "
                                     f"ON c.{quote(spec.fk or '')} = m.{quote(spec.parent)} WHERE {where}", *args)
                check(f"rows.{path}", int(found[0]["n"]) if found else 0, in_pg)
            elif spec.kind == "child":
                in_mongo = await collection.count_documents({"$and": [query, {stored: {"$type": "object"}}]})
                in_pg = await scalar(f"SELECT count(*) FROM {quote(spec.table or '')} c JOIN {table} m "
                                     f"ON c.{quote(spec.fk or '')} = m.{quote(spec.parent)} WHERE {where}", *args)
                check(f"child.{path}", in_mongo, in_pg)
            else:
                await _references(entity, path, stored, spec, collection, mongo_db, query, where, args,
                                  scalar, check, id_map_table)
    return layer_result("counts", differences, checked, time.perf_counter() - started)


async def _references(entity: Entity, path: str, stored: str, spec: Field, collection: Any, mongo_db: Any,
                      query: dict[str, Any], where: str, args: list[Any], scalar: Any, check: Any,
                      id_map_table: str) -> None:
    """Documents with the reference set vs non-null FK; dangling on each side."""
    table = quote(entity.table)
    with_ref = {"$and": [query, {stored: {"$type": "objectId"}}]}
    if spec.kind == "ref":
        fk = f"m.{quote(spec.column or '')}"
        in_pg = await scalar(f"SELECT count(*) FROM {table} m WHERE {where} AND {fk} IS NOT NULL", *args)
    else:
        fk = f"m.{quote((spec.column or '') + '_id')}"
        in_pg = await scalar(f"SELECT count(*) FROM {table} m WHERE {where} "
                             f"AND m.{quote((spec.column or '') + '_ref_kind')} = 'entity'", *args)
    check(f"refs.{path}", await collection.count_documents(with_ref), in_pg)
    # dangling in Mongo: an ObjectId whose target document does not exist
    target = mongo_db[spec.to or ""]
    dangling = 0
    batch: set[ObjectId] = set()

    async def flush() -> int:
        found = {row["_id"] async for row in target.find({"_id": {"$in": list(batch)}}, {"_id": 1})}
        missing = len(batch - found)
        batch.clear()
        return missing

    async for document in collection.find(with_ref, {stored: 1}):
        value: Any = document
        for step in stored.split("."):
            value = value.get(step) if isinstance(value, dict) else None
        if isinstance(value, ObjectId):
            batch.add(value)
            if len(batch) >= _DANGLING_BATCH:
                dangling += await flush()
    if batch:
        dangling += await flush()
    check(f"dangling.{path}", dangling, 0, "dangling_in_mongo")
    # dangling in PostgreSQL: a FK with no legacy id, or a free-string ref that is an id
    lost = await scalar(f"SELECT count(*) FROM {table} m WHERE {where} AND {fk} IS NOT NULL AND NOT EXISTS "
                        f"(SELECT 1 FROM {quote(id_map_table)} i WHERE i.new_id = {fk})", *args)
    if spec.kind == "mixed":
        external = f"m.{quote((spec.column or '') + '_external_ref')}"
        lost += await scalar(f"SELECT count(*) FROM {table} m WHERE {where} AND {external} ~ '{_ID_LIKE}'", *args)
    check(f"dangling.{path}", 0, lost, "dangling_in_postgres")
