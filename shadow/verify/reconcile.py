"""Layer 3b: full reconciliation. Both stores streamed in legacy-id order in keyset
pages — Mongo by `_id`, PostgreSQL by the key column, each page rebuilt through the
rules' compiled plans by the PostgreSQL source — every document made the API's shape,
canonicalized and compared by the proxy's diff. Memory: two pages, whatever the size of
the collection."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import date
from typing import Any

from bson import ObjectId

from shadow.compare.diff import compare
from shadow.model import Outcome
from shadow.publish.redaction import Redaction
from shadow.replay.sources.apijson import api_document
from shadow.replay.sources.postgres import PostgresSource, quote
from shadow.rules.spec import Entity
from shadow.verify.buckets import Bucket, ResumeFile, bucket_end
from shadow.verify.model import MAX_REPORTED, Difference, LayerResult, layer_result
from shadow.verify.scope import KeyRange, bucket_of, mongo_filter, pg_condition

Gaps = Callable[[Entity, list[str]], Any]  # async: keys -> the ones with an open dual-write gap


class OrderError(RuntimeError):
    """PostgreSQL returned keys out of ObjectId order (a collation that does not sort
    lowercase hex bytewise): the merge cannot be trusted."""


class _Pages:
    """One store's documents in key order, one page at a time."""

    def __init__(self, fetch: Callable[[str | None, int, bool], Any], page: int) -> None:
        self.fetch, self.page = fetch, page
        self.items: list[tuple[str, Any]] = []
        self.index = 0
        self.bound: str | None = None  # where the next page starts
        self.inclusive = False  # the bound itself included (after a skip) or not (after a page)
        self.last: str | None = None
        self.done = False
        self.read = 0

    async def head(self) -> tuple[str, Any] | None:
        if self.index >= len(self.items):
            if self.done:
                return None
            self.items, self.index = await self.fetch(self.bound, self.page, self.inclusive), 0
            self.read += len(self.items)
            self.done = len(self.items) < self.page
            if not self.items:
                return None
            previous = self.last
            for key, _ in self.items:
                if previous is not None and key <= previous:
                    raise OrderError(f"keys out of order: {key!r} after {previous!r}")
                previous = key
            self.last = self.bound = self.items[-1][0]
            self.inclusive = False
        return self.items[self.index]

    def pop(self) -> None:
        self.index += 1

    def skip_to(self, boundary: str) -> None:
        """Drop everything before `boundary` (the end of a bucket the resume file skips)."""
        while self.index < len(self.items) and self.items[self.index][0] < boundary:
            self.index += 1
        if self.index >= len(self.items) and not self.done and (self.last is None or boundary > self.last):
            self.bound, self.inclusive = boundary, True


async def run_docs(entity: Entity, mongo_db: Any, source: PostgresSource, key_range: KeyRange, *,
                   page: int = 500, max_rate: float | None = None, resume: ResumeFile | None = None,
                   gaps: Gaps | None = None, on_page: Callable[[int], None] | None = None,
                   today: date | None = None) -> LayerResult:
    started = time.perf_counter()
    today = today or date.today()
    collection = mongo_db[entity.collection]
    query = mongo_filter(entity, key_range)
    where, args = pg_condition(entity, key_range)
    objectid = entity.key_type == "objectid"
    redaction = Redaction.for_entity(entity)

    async def mongo_page(after: str | None, size: int, inclusive: bool) -> list[tuple[str, Any]]:
        bound: dict[str, Any] = {}
        if after is not None:
            bound = {"_id": {"$gte" if inclusive else "$gt": ObjectId(after) if objectid else after}}
        wanted = {"$and": [query, bound]} if bound and query else (bound or query)
        cursor = collection.find(wanted).sort("_id", 1).limit(size)
        found = []
        async for document in cursor:
            key = str(document["_id"])
            found.append((key.lower() if objectid else key, document))
        return found

    key_sql = quote(entity.key)

    async def pg_page(after: str | None, size: int, inclusive: bool) -> list[tuple[str, Any]]:
        condition, values = where, list(args)
        if after is not None:
            values.append(after)
            condition += f" AND {key_sql} {'>=' if inclusive else '>'} ${len(values)}"
        values.append(size)
        async with source.pool.acquire() as connection:
            rows = await connection.fetch(f"SELECT {key_sql} FROM {quote(entity.table)} WHERE {condition} "
                                          f"ORDER BY {key_sql} LIMIT ${len(values)}", *values)
        keys = [row[0] for row in rows]
        documents = await source.fetch(entity, keys)
        return [(key, documents[key]) for key in keys]

    mongo, pg = _Pages(mongo_page, page), _Pages(pg_page, page)
    buckets: dict[str, Bucket] = {}
    differences: list[Difference] = []
    dropped = compared = skipped = 0
    pending: list[tuple[str, Difference]] = []  # differences of this page, before gap labels
    paced_from, paced = time.monotonic(), 0

    async def flush() -> None:
        nonlocal dropped
        open_gaps: set[str] = set(await gaps(entity, [key for key, _ in pending])) if gaps and pending else set()
        for key, difference in pending:
            if len(differences) >= MAX_REPORTED:
                dropped += 1
                continue
            if key in open_gaps:
                difference = Difference(difference.layer, difference.check, difference.kind, difference.key,
                                        difference.path, difference.mongo, difference.postgres,
                                        "open dual-write gap")
            differences.append(difference)
        pending.clear()

    while True:
        mongo_head, pg_head = await mongo.head(), await pg.head()
        if mongo_head is None and pg_head is None:
            break
        key = min(item[0] for item in (mongo_head, pg_head) if item is not None)
        name = bucket_of(key)
        if resume is not None and resume.skips(entity.name, name):
            end = bucket_end(name)
            if end is not None:
                skipped += 1
                mongo.skip_to(end)
                pg.skip_to(end)
                continue
        bucket = buckets.setdefault(name, Bucket())
        if mongo_head is not None and mongo_head[0] == key:
            control = api_document(entity, mongo_head[1])
            bucket.add_mongo(key, control)
            mongo.pop()
            if pg_head is not None and pg_head[0] == key:
                candidate = pg_head[1]
                bucket.add_pg(key, candidate)
                pg.pop()
                verdict = compare(entity, control, candidate, today)
                if verdict.outcome is not Outcome.MATCH:
                    bucket.differences += 1
                    for diff in redaction.diffs(verdict.diffs):  # the report leaves the process
                        pending.append((key, Difference("docs", "document", "mismatch", key, diff.path,
                                                        diff.control, diff.candidate)))
            else:
                bucket.differences += 1
                pending.append((key, Difference("docs", "document", "missing", key)))
        else:
            assert pg_head is not None
            bucket.add_pg(key, pg_head[1])
            pg.pop()
            bucket.differences += 1
            pending.append((key, Difference("docs", "document", "extra", key)))
        compared += 1
        paced += 1
        if compared % page == 0:
            await flush()
            if on_page is not None:
                on_page(page)
            if max_rate:
                ahead = paced / max_rate - (time.monotonic() - paced_from)
                if ahead > 0:
                    await asyncio.sleep(ahead)
    await flush()
    if on_page is not None:
        on_page(compared % page)
    if resume is not None:
        resume.record(entity.name, buckets)
    return layer_result("docs", differences, compared, time.perf_counter() - started, dropped,
                        buckets={name: bucket.as_json() for name, bucket in sorted(buckets.items())},
                        skipped_buckets=skipped, mongo_read=mongo.read, pg_read=pg.read)
