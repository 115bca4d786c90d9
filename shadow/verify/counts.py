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
    """Mongo: the row count pushed down, then ONE pass over the documents projected to the
    relationship fields (array lengths, subdocuments, references; referenced ids checked
    in batches of `$in`) — one collection scan, whatever the number of relationships.
    PostgreSQL: one aggregate query per check."""
    started = time.perf_counter()
    collection = mongo_db[entity.collection]
    query = mongo_filter(entity, key_range)
    where, args = pg_condition(entity, key_range, "m")
    table = quote(entity.table)
    relationships = list(relationship_fields(entity))
    differences: list[Difference] = []
    checked = 0

    def check(name: str, in_mongo: int, in_pg: int, kind: str = "count") -> None:
        nonlocal checked
        checked += 1
        if in_mongo != in_pg:
            differences.append(Difference("counts", name, kind, mongo=in_mongo, postgres=in_pg))

    mongo_side = await _mongo_pass(collection, mongo_db, query, relationships)
    async with pool.acquire() as connection:
        async def scalar(sql: str, *values: Any) -> int:
            return int(await connection.fetchval(sql, *values) or 0)

        check("count", await collection.count_documents(query),
              await scalar(f"SELECT count(*) FROM {table} m WHERE {where}", *args))
        for path, _, spec in relationships:
            in_mongo, dangling = mongo_side[path]
            if spec.kind in ("rows", "child"):
                in_pg = await scalar(f"SELECT count(*) FROM {quote(spec.table or '')} c JOIN {table} m "
                                     f"ON c.{quote(spec.fk or '')} = m.{quote(spec.parent)} WHERE {where}", *args)
                check(f"{spec.kind}.{path}", in_mongo, in_pg)
                continue
            column = spec.column or ""
            if spec.kind == "ref":
                fk = f"m.{quote(column)}"
                in_pg = await scalar(f"SELECT count(*) FROM {table} m WHERE {where} AND {fk} IS NOT NULL", *args)
            else:
                fk = f"m.{quote(column + '_id')}"
                in_pg = await scalar(f"SELECT count(*) FROM {table} m WHERE {where} "
                                     f"AND m.{quote(column + '_ref_kind')} = 'entity'", *args)
            check(f"refs.{path}", in_mongo, in_pg)
            check(f"dangling.{path}", dangling, 0, "dangling_in_mongo")
            # dangling in PostgreSQL: a FK with no legacy id, or a free-string ref that is an id
            lost = await scalar(f"SELECT count(*) FROM {table} m WHERE {where} AND {fk} IS NOT NULL AND NOT EXISTS "
                                f"(SELECT 1 FROM {quote(id_map_table)} i WHERE i.new_id = {fk})", *args)
            if spec.kind == "mixed":
                external = f"m.{quote(column + '_external_ref')}"
                lost += await scalar(f"SELECT count(*) FROM {table} m WHERE {where} AND {external} ~ '{_ID_LIKE}'",
                                     *args)
            check(f"dangling.{path}", 0, lost, "dangling_in_postgres")
    return layer_result("counts", differences, checked, time.perf_counter() - started)


async def _mongo_pass(collection: Any, mongo_db: Any, query: dict[str, Any],
                      relationships: list[tuple[str, str, Field]]) -> dict[str, tuple[int, int]]:
    """API path -> (count, dangling) on the Mongo side: array items (rows) and
    subdocuments (child) in one projected pass; each reference by a sorted merge of its
    values with the target collection's ids (bounded memory, no per-id lookups)."""
    found: dict[str, tuple[int, int]] = {}
    nested = [(path, stored, spec) for path, stored, spec in relationships if spec.kind in ("rows", "child")]
    if nested:
        counts = dict.fromkeys((path for path, _, _ in nested), 0)
        async for document in collection.find(query, {stored: 1 for _, stored, _ in nested}):
            for path, stored, spec in nested:
                value: Any = document
                for step in stored.split("."):
                    value = value.get(step) if isinstance(value, dict) else None
                if spec.kind == "rows":
                    counts[path] += len(value) if isinstance(value, list) else 0
                else:
                    counts[path] += isinstance(value, dict)
        found.update((path, (count, 0)) for path, count in counts.items())
    for path, stored, spec in relationships:
        if spec.kind in ("ref", "mixed"):
            found[path] = await _reference_merge(collection, mongo_db[spec.to or ""], query, stored)
    return found


async def _reference_merge(collection: Any, target: Any, query: dict[str, Any], stored: str) -> tuple[int, int]:
    """(documents with an ObjectId at `stored`, how many of those point at no document of
    `target`): the references sorted by the server, merged with the target's `_id`s."""
    pipeline = [{"$match": {"$and": [query, {stored: {"$type": "objectId"}}]}},
                {"$project": {"_id": 0, "ref": f"${stored}"}}, {"$sort": {"ref": 1}}]
    references = (await collection.aggregate(pipeline, allowDiskUse=True)).__aiter__()
    targets = target.find({}, {"_id": 1}).sort("_id", 1).__aiter__()
    current: ObjectId | None = None
    exhausted = False
    total = dangling = 0
    async for row in references:
        wanted = row["ref"]
        total += 1
        while not exhausted and (current is None or current < wanted):
            try:
                current = (await targets.__anext__())["_id"]
            except StopAsyncIteration:
                exhausted = True
        if current != wanted:
            dangling += 1
    return total, dangling
